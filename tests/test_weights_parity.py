"""Imported weights compute the source framework's function: logits against torchvision / timm.

`reference/make_parity_outputs.py` (run by hand where torch is installed) filled each
torchvision and timm network with synthetic tensors (`cnnjax.weights.synthetic`: numpy only,
BatchNorm statistics far from 0/1) and recorded its eval-mode float32 logits at 224 and at an
odd size, with the exact keys and shapes of its state_dict. Here the same state_dict is rebuilt
without torch, converted by `cnnjax.weights.convert` (every key must be used, no key may be
missing) and run through cnnjax's model; the logits must agree to a relative 1e-4.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from weights_reference import reference, relative_error, source_state_dict

from cnnjax.models import create_model
from cnnjax.weights import catalog, convert, names
from cnnjax.weights.synthetic import synthetic_images

RELATIVE_TOLERANCE = 1e-4  # of the largest reference logit, float32


def same_layout_as_torchvision(source: str, model: str) -> bool:
    """Whether the source's state_dict has torchvision's keys and shapes (timm's ResNets...)."""
    _, arrays = reference()
    if source == "torchvision" or f"torchvision/{model}/keys" not in arrays:
        return False
    return all(
        np.array_equal(arrays[f"{source}/{model}/{part}"], arrays[f"torchvision/{model}/{part}"])
        for part in ("keys", "shapes")
    )


PAIRS = [(s, m) for s in catalog.SOURCES for m in catalog.importable_models(s)]
RUN = [(s, m) for s, m in PAIRS if not same_layout_as_torchvision(s, m)]
SHARED = [(s, m) for s, m in PAIRS if same_layout_as_torchvision(s, m)]


def test_every_importable_pair_has_reference_outputs():
    meta, _ = reference()
    assert {(c["source"], c["model"]) for c in meta["cases"]} == set(PAIRS)


@pytest.mark.slow
@pytest.mark.parametrize("source, model", RUN, ids=[f"{s}-{m}" for s, m in RUN])
def test_logits_equal_the_source_framework_s(source, model, fast_compile):
    meta, arrays = reference()
    variables = convert(source_state_dict(source, model), model, source, origin="synthetic")
    network = create_model(model)
    forward = jax.jit(lambda v, x: network.apply(v, x, train=False))
    for case in meta["cases"]:
        if (case["source"], case["model"]) != (source, model):
            continue
        images = synthetic_images(case["batch"], case["size"])
        theirs = arrays[f"{source}/{model}/{case['size']}"]
        ours = np.asarray(forward(variables, images))
        assert ours.shape == theirs.shape
        assert relative_error(ours, theirs) <= RELATIVE_TOLERANCE, case


@pytest.mark.parametrize("source, model", SHARED, ids=[f"{s}-{m}" for s, m in SHARED])
def test_timm_networks_in_torchvision_s_layout_compute_its_function(source, model):
    # timm's ResNets and DenseNets have torchvision's state_dict layout, so they convert by the
    # same rule, and on the same tensors the reference script found the same logits: the
    # torchvision parity test above covers them.
    meta, arrays = reference()
    for case in meta["cases"]:
        if (case["source"], case["model"]) == (source, model):
            theirs = arrays[f"torchvision/{model}/{case['size']}"]
            ours = arrays[f"{source}/{model}/{case['size']}"]
            assert relative_error(ours, theirs) <= 1e-5, case
    assert names.module_rule(model, source) is names.module_rule(model, "torchvision")


def test_googlenet_transform_input_is_the_recorded_normalisation(fast_compile):
    # torchvision's pretrained GoogLeNet takes ImageNet-normalised inputs and re-normalises
    # them (transform_input); cnnjax records mean = std = 0.5 for those weights instead.
    _, arrays = reference()
    variables = convert(
        source_state_dict("torchvision", "googlenet_bn"), "googlenet_bn", "torchvision"
    )
    published = catalog.choices("torchvision", "googlenet_bn")[0]
    pixels = (synthetic_images(2, 224) + 2) / 4
    images = (pixels - np.array(published.mean)) / np.array(published.std)
    network = create_model("googlenet_bn")
    forward = jax.jit(lambda v, x: network.apply(v, x, train=False))
    images = images.astype(np.float32)
    ours = forward(variables, images)
    theirs = arrays["torchvision/googlenet_bn/transform_input"]
    assert relative_error(np.asarray(ours), theirs) <= RELATIVE_TOLERANCE


def test_a_transposed_kernel_is_caught():
    # The same conversion with one conv kernel's spatial axes swapped (a plausible porting bug,
    # invisible in shapes) must not pass the parity check.
    meta, arrays = reference()
    tensors = source_state_dict("torchvision", "resnet18")
    name = "layer2.0.conv1.weight"
    tensors[name] = np.ascontiguousarray(np.swapaxes(tensors[name], 2, 3))
    variables = convert(tensors, "resnet18", "torchvision")
    ours = create_model("resnet18").apply(variables, synthetic_images(2, 224), train=False)
    assert relative_error(np.asarray(ours), arrays["torchvision/resnet18/224"]) > 100 * (
        RELATIVE_TOLERANCE
    )

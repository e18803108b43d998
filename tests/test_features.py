"""cnnjax.features against forwards computed by hand, and the layer names every model documents."""

from __future__ import annotations

import functools
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import cnnjax
from cnnjax.features import UnknownLayerError, feature_names, feature_shapes
from cnnjax.layers import BasicBlock, ConvBNAct, ResidualStage
from cnnjax.summary import format_layer_names


def _conv_valid(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation without padding, by summing over every window (NHWC, HWIO)."""
    kh, kw = kernel.shape[:2]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias


def _max_pool_2x2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.fixture(scope="module")
def lenet():
    model = cnnjax.create_model("lenet5")
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
    return model, model.init(jax.random.key(0), x), x


def test_lenet5_features_equal_a_numpy_forward(lenet):
    model, variables, x = lenet
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    xs = np.asarray(x, np.float64)
    c1 = _conv_valid(xs, p["c1"]["kernel"], p["c1"]["bias"])
    s2 = _max_pool_2x2(np.maximum(c1, 0))
    c3 = _conv_valid(s2, p["c3"]["kernel"], p["c3"]["bias"])
    s4 = _max_pool_2x2(np.maximum(c3, 0))
    c5 = s4.reshape(2, -1) @ p["c5"]["kernel"] + p["c5"]["bias"]
    f6 = np.maximum(c5, 0) @ p["f6"]["kernel"] + p["f6"]["bias"]
    logits = np.maximum(f6, 0) @ p["output"]["kernel"] + p["output"]["bias"]
    expected = {"c1": c1, "s2": s2, "c3": c3, "s4": s4, "c5": c5, "f6": f6, "output": logits}

    got = cnnjax.features(model, variables, x, layers=list(expected))
    assert list(got) == list(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), value, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.apply(variables, x), logits, rtol=1e-4, atol=1e-4)


def test_resnet20_stages_equal_the_stem_and_stages_applied_by_hand():
    model = cnnjax.create_model("resnet20")
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    # Running statistics away from (0, 1), so that inference-mode BN is not the identity.
    leaves, treedef = jax.tree.flatten(variables["batch_stats"])
    keys = jax.random.split(jax.random.key(2), len(leaves))
    stats = [
        jax.random.uniform(k, a.shape, minval=0.5, maxval=1.5)
        for k, a in zip(keys, leaves, strict=True)
    ]
    variables = {"params": variables["params"], "batch_stats": jax.tree.unflatten(treedef, stats)}
    params, batch_stats = variables["params"], variables["batch_stats"]

    def own(name: str) -> dict:
        return {"params": params[name], "batch_stats": batch_stats[name]}

    stem = ConvBNAct(16, 3, padding=1).apply(own("conv1"), x)
    block = functools.partial(BasicBlock, shortcut="A")
    layer1 = ResidualStage(block, 3, 16, 1).apply(own("layer1"), stem)
    layer2 = ResidualStage(block, 3, 32, 2).apply(own("layer2"), layer1)
    first_block = BasicBlock(32, 2, shortcut="A").apply(
        {"params": params["layer2"]["block1"], "batch_stats": batch_stats["layer2"]["block1"]},
        layer1,
    )

    got = cnnjax.features(model, variables, x, ["conv1", "layer1", "layer2/block1", "layer2"])
    np.testing.assert_allclose(got["conv1"], stem, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["layer1"], layer1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["layer2/block1"], first_block, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["layer2"], layer2, rtol=1e-5, atol=1e-5)
    assert got["layer2"].shape == (2, 4, 4, 32)


def test_lenet5_names_are_the_paper_table_in_order():
    names = feature_names(cnnjax.create_model("lenet5"), (32, 32, 1))
    assert names == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]


def test_resnet20_names_count_every_module_parents_first():
    names = feature_names(cnnjax.create_model("resnet20"), (32, 32, 3))
    # stem unit + its conv and bn; per stage: the stage, and per block the block plus two
    # conv-BN units of 3 modules each (option-A shortcuts have no module); then fc.
    assert len(names) == 3 + 3 * (1 + 3 * (1 + 2 * 3)) + 1
    assert names[:3] == ["conv1", "conv1/conv", "conv1/bn"]
    order = [names.index(n) for n in ("layer1", "layer1/block1", "layer1/block1/conv2/bn")]
    assert order == sorted(order) and names.index("layer2") > order[-1]
    assert names[-1] == "fc"


def test_feature_shapes_are_the_extracted_shapes(lenet):
    model, variables, x = lenet
    shapes = feature_shapes(model, (32, 32, 1))
    got = cnnjax.features(model, variables, x, list(shapes))
    assert {k: v.shape[1:] for k, v in got.items()} == shapes
    assert shapes["c1"] == (28, 28, 6)  # (32 - 5) + 1, paper Fig. 2


def test_a_single_name_may_be_a_string(lenet):
    model, variables, x = lenet
    assert list(cnnjax.features(model, variables, x, "f6")) == ["f6"]


def test_unknown_name_lists_the_valid_ones_on_one_line(lenet):
    model, variables, x = lenet
    with pytest.raises(UnknownLayerError) as info:
        cnnjax.features(model, variables, x, ["c1", "f7"])
    message = str(info.value)
    assert "\n" not in message and "'f7'" in message and "did you mean f6" in message
    for name in ["c1", "s2", "c3", "s4", "c5", "f6", "output"]:
        assert name in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="at least one layer"):
        cnnjax.features(model, variables, x, [])


def test_unknown_name_in_a_deep_model_lists_the_top_level_names():
    model = cnnjax.create_model("resnet20")
    x = jnp.zeros((1, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(UnknownLayerError) as info:
        cnnjax.features(model, variables, x, ["layer4"])
    message = str(info.value)
    assert "conv1, layer1, layer2, layer3, fc" in message
    assert "all 70" in message and "block2/conv1" not in message


def test_summary_layers_lists_the_names_with_shapes():
    lines = format_layer_names("lenet5").splitlines()
    assert lines[0].split() == ["layer", "output", "shape"]
    assert [line.split() for line in lines[1:3]] == [["c1", "28×28×6"], ["s2", "14×14×6"]]
    assert [line.split()[0] for line in lines[1:]] == feature_names(
        cnnjax.create_model("lenet5"), (32, 32, 1)
    )
    grouped = format_layer_names("resnet20", depth=2).splitlines()[1:]
    assert [line.split()[0] for line in grouped] == [
        "conv1", "conv1/conv", "conv1/bn",
        *[f"layer{s}{b}" for s in (1, 2, 3) for b in ("", "/block1", "/block2", "/block3")],
        "fc",
    ]  # fmt: skip


# One model per family and stem: its top-level layer names must appear in its module docstring.
DOCUMENTED = [
    "lenet5",
    "small_convnet",
    "alexnet",
    "zfnet",
    "vgg11_bn",
    "nin",
    "googlenet",
    "googlenet_bn",
    "resnet18",
    "resnet20",
    "densenet121",
    "densenet_bc_100",
    "textcnn",
]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_model_documents_its_layer_names(name):
    spec = cnnjax.model_spec(name)
    model = cnnjax.create_model(name)
    doc = sys.modules[type(model).__module__].__doc__
    assert "Layer names" in doc
    top = [n for n in feature_names(model, spec.input_shape, spec.input_dtype) if "/" not in n]
    # A run like `layer1` ... `layer4` documents the names between; so does `conv{stage}_{i}`.
    spans = re.findall(r"`([a-z_]+?)(\d+)`\s*\.\.\.\s*`\1(\d+)`", doc)

    def documented(layer: str) -> bool:
        if re.search(rf"(?<![\w/]){re.escape(layer)}(?![\w/])", doc):
            return True
        if "conv{stage}_{i}" in doc and re.fullmatch(r"conv\d+_\d+", layer):
            return True
        for prefix, low, high in spans:
            number = re.fullmatch(re.escape(prefix) + r"(\d+)", layer)
            if number and int(low) <= int(number.group(1)) <= int(high):
                return True
        return False

    missing = [layer for layer in top if not documented(layer)]
    assert not missing, f"{name}: {missing} not named in {type(model).__module__}'s docstring"

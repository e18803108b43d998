"""Dense evaluation (VGG Sec. 3.2) of the nets with FC heads, and torchvision's AlexNet.

Expected scores are computed by hand from the same parameters: the plain fc6-fc7-fc8 classifier
(NumPy-order flatten, matmuls) on every crop-sized window of the captured pool5 map, averaged.
That average equals the dense conv output only because fc7 and fc8 act per position. Window
positions and minimum sizes come from the output-size arithmetic in the comments, not from the
code under test. Parameters come from an integer hash (jax's threefry init of 100M+ weights
takes tens of seconds on 2 CPU cores); every real forward pass runs at batch 1.
"""

from __future__ import annotations

import functools
import math
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

import cnnjax
from cnnjax.features import feature_shapes
from cnnjax.layers import InputTooSmallError, WindowDense
from cnnjax.models.alexnet import TORCH_KERNEL_INIT, _torch_bias_init

CLASSES = 5

# name -> (training crop, dense side, fc6 window, fc6 positions per axis at the dense side).
# VGG-11: 256 / 2^5 = 8, 8 - 7 + 1 = 2. AlexNet: (259 - 11)/4 + 1 = 63 -> 31 -> 15 -> 7,
# 7 - 6 + 1 = 2. ZFNet: (256 + 2 - 7)/2 + 1 = 126 -> 63 -> (63 - 5)/2 + 1 = 30 -> 15 -> 7 (ceil
# pools), 7 - 6 + 1 = 2.
DENSE = {
    "vgg11": (224, 256, 7, 2),
    "alexnet": (227, 259, 6, 2),
    "zfnet": (224, 256, 6, 2),
}

# name -> smallest input side. VGG: 7 · 2^5. AlexNet: 226 -> 54 -> 26 -> 12 -> 5 but 227 -> 6.
# ZFNet (pad-1 conv1, 5×5/2 conv2, ceil-mode 3×3/2 pools): 207 -> 102 -> 51 -> 24 -> 12 -> 6,
# 206 -> 101 -> 50 -> 23 -> 11 -> 5.
MINIMUM = {
    "vgg16": ("VGG", 224, 7),
    "alexnet": ("AlexNet", 227, 6),
    "alexnet_grouped": ("AlexNet", 227, 6),
    "zfnet": ("ZFNet", 207, 6),
}

# torchvision alexnet.py layer shapes (model_zoo.md §3.1), in our HWIO / (in, out) layouts.
ALEXNET_TV_SHAPES = {
    "conv1": (11, 11, 3, 64),
    "conv2": (5, 5, 64, 192),
    "conv3": (3, 3, 192, 384),
    "conv4": (3, 3, 384, 256),
    "conv5": (3, 3, 256, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
    "fc8": (4096, 1000),
}


def _abstract(model: nn.Module, side: int, batch: int = 1):
    x = jax.ShapeDtypeStruct((batch, side, side, 3), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _hash_uniform(shape: tuple[int, ...], seed: int) -> jax.Array:
    """U[0, 1) from a murmur3-style integer hash of the index (to be traced inside `jax.jit`)."""
    x = lax.iota(jnp.uint32, math.prod(shape)) * jnp.uint32(0x9E3779B9) + jnp.uint32(seed)
    for shift, multiplier in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        x = (x ^ (x >> shift)) * jnp.uint32(multiplier)
    x = x ^ (x >> 16)
    return ((x >> 8).astype(jnp.float32) / 2**24).reshape(shape)


@functools.cache
def _model_and_variables(name: str, crop: int) -> tuple[nn.Module, dict]:
    """The model with He-uniform weights and ±0.1 biases, hashed in one jit (not threefry)."""
    model = cnnjax.create_model(name, num_classes=CLASSES)
    leaves, tree = jax.tree.flatten(_abstract(model, crop))

    def fill() -> list[jax.Array]:
        filled = []
        for seed, leaf in enumerate(leaves):
            bound = math.sqrt(6 / math.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
            filled.append((2 * _hash_uniform(leaf.shape, seed) - 1) * bound)
        return filled

    return model, jax.tree.unflatten(tree, jax.jit(fill)())


def _image(side: int) -> jax.Array:
    return jax.random.normal(jax.random.key(side), (1, side, side, 3))


def _run(model: nn.Module, variables: dict, x: jax.Array) -> tuple[np.ndarray, dict]:
    """Scores and the captured pool5 and fc8 outputs, from one jitted forward pass."""
    keep = lambda module, method: method == "__call__" and module.path in (("pool5",), ("fc8",))
    apply = functools.partial(
        model.apply, capture_intermediates=keep, mutable=["intermediates"], train=False
    )
    out, state = jax.jit(apply)(variables, x)
    captured = state["intermediates"]
    return np.asarray(out), {k: np.asarray(captured[k]["__call__"][0]) for k in ("pool5", "fc8")}


def _plain_classifier(params: dict, window: np.ndarray) -> np.ndarray:
    """fc6-ReLU-fc7-ReLU-fc8 on one (N, k, k, C) window flattened row-major over H, W, C."""
    h = window.reshape(window.shape[0], -1)
    for layer in ("fc6", "fc7"):
        h = jnp.maximum(h @ params[layer]["kernel"] + params[layer]["bias"], 0)
    return np.asarray(h @ params["fc8"]["kernel"] + params["fc8"]["bias"])


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------------------- WindowDense


def test_window_dense_is_dense_on_its_window_and_slides_beyond():
    layer = WindowDense(5, window=3)
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 7))
    at_window = layer.init(jax.random.key(1), x[:, :3, :3])
    at_larger = layer.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, at_window) == {"params": {"kernel": (63, 5), "bias": (5,)}}
    jax.tree.map(np.testing.assert_array_equal, at_window, at_larger)  # same params either way

    dense = nn.Dense(5)
    plain = np.asarray(x[:, :3, :3]).reshape(2, -1)
    np.testing.assert_array_equal(
        layer.apply(at_window, x[:, :3, :3]), dense.apply(at_window, plain)
    )
    slid = np.asarray(layer.apply(at_window, x))
    assert slid.shape == (2, 3, 2, 5)  # (5 - 3 + 1) × (4 - 3 + 1) positions
    for i, j in np.ndindex(3, 2):
        window = np.asarray(x[:, i : i + 3, j : j + 3]).reshape(2, -1)
        _assert_close(slid[:, i, j], np.asarray(dense.apply(at_window, window)))


def test_window_dense_rejects_a_smaller_map_and_a_flat_input():
    layer = WindowDense(5, window=3)
    with pytest.raises(InputTooSmallError, match=r"a 2×4 map is smaller than its 3×3 window"):
        jax.eval_shape(layer.init, jax.random.key(0), jnp.zeros((1, 2, 4, 7)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) map.*\(1, 63\)"):
        jax.eval_shape(layer.init, jax.random.key(0), jnp.zeros((1, 63)))


# ------------------------------------------------------------------- dense evaluation


@pytest.mark.parametrize("name", ["vgg16", "alexnet", "zfnet"])
def test_param_tree_is_the_same_at_the_crop_and_larger(name):
    crop, larger = (224, 256) if name != "alexnet" else (227, 259)
    model = cnnjax.create_model(name)
    plain, dense = _abstract(model, crop), _abstract(model, larger)
    assert jax.tree.map(jnp.shape, plain) == jax.tree.map(jnp.shape, dense)
    fc6_inputs = 25_088 if name == "vgg16" else 9_216
    assert dense["params"]["fc6"]["kernel"].shape == (fc6_inputs, 4096)


@pytest.mark.parametrize("name", sorted(DENSE))
def test_crop_size_is_the_plain_forward_pass(name):
    crop, _, window, _ = DENSE[name]
    model, variables = _model_and_variables(name, crop)
    out, captured = _run(model, variables, _image(crop))
    assert captured["pool5"].shape[1:3] == (window, window)
    assert out.shape == captured["fc8"].shape == (1, CLASSES)
    _assert_close(out, _plain_classifier(variables["params"], captured["pool5"]))


@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_scores_are_the_average_over_windows(name):
    crop, side, window, positions = DENSE[name]
    model, variables = _model_and_variables(name, crop)
    out, captured = _run(model, variables, _image(side))
    pool5 = captured["pool5"]
    assert pool5.shape[1:3] == (window + positions - 1,) * 2
    assert captured["fc8"].shape == (1, positions, positions, CLASSES)  # the class score map
    per_window = [
        _plain_classifier(variables["params"], pool5[:, i : i + window, j : j + window])
        for i, j in np.ndindex(positions, positions)
    ]
    assert out.shape == (1, CLASSES)
    _assert_close(out, np.mean(per_window, axis=0))
    _assert_close(out, captured["fc8"].mean(axis=(1, 2)))


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_too_small_input_names_fc6_and_the_minimum(name):
    family, minimum, window = MINIMUM[name]
    model = cnnjax.create_model(name, num_classes=CLASSES)
    variables = _abstract(model, minimum)
    x = jax.ShapeDtypeStruct((1, minimum, minimum, 3), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, CLASSES)
    small = minimum - 1
    message = (
        rf"^{family} layer 'fc6': input of size {small}×{small} is too small: it leaves a "
        rf"{window - 1}×{window - 1} map for fc6's {window}×{window} window; feed at least "
        rf"{minimum}×{minimum} \(larger inputs are evaluated densely\)"
    )
    too_small = jax.ShapeDtypeStruct((1, small, small, 3), jnp.float32)
    with pytest.raises(InputTooSmallError, match=message):  # the built model, a smaller image
        jax.eval_shape(model.apply, variables, too_small)


def test_vgg_197_is_too_small_and_384_is_dense():
    model = cnnjax.create_model("vgg16", num_classes=CLASSES)
    built = _abstract(model, 224)
    x197 = jax.ShapeDtypeStruct((1, 197, 197, 3), jnp.float32)
    with pytest.raises(InputTooSmallError, match=r"VGG layer 'fc6'.*197×197.*at least 224×224"):
        jax.eval_shape(model.apply, built, x197)
    variables = _abstract(model, 384, batch=2)
    x = jax.ShapeDtypeStruct((2, 384, 384, 3), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, CLASSES)
    # 384 / 2^5 = 12: fc6 (7×7) at 6×6 positions; every FC feature is still capturable.
    shapes = feature_shapes(model, (384, 384, 3))
    assert shapes["pool5"] == (12, 12, 512)
    assert shapes["fc6"] == shapes["drop6"] == shapes["fc7"] == shapes["drop7"] == (6, 6, 4096)
    assert shapes["fc8"] == (6, 6, CLASSES)
    assert feature_shapes(model, (224, 224, 3))["fc6"] == (4096,)


def test_vgg_built_on_32_pixel_images_has_a_1x1_fc6_window():
    # A CIFAR-size VGG (as before dense evaluation existed): fc6 takes the whole 1×1 pool5 map.
    model = cnnjax.create_model("vgg11", num_classes=CLASSES)
    variables = _abstract(model, 32)
    assert variables["params"]["fc6"]["kernel"].shape == (512, 4096)
    x64 = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x64).shape == (1, CLASSES)  # 2×2, averaged


def test_vgg_fc6_window_1_takes_32_pixel_inputs():
    # 32 / 2^5 = 1: fc6 is 512 -> 4096; 64 leaves 2×2 positions; at 31 pool5 has nothing to pool.
    model = cnnjax.create_model("vgg11", num_classes=CLASSES, fc6_window=1)
    assert _abstract(model, 32)["params"]["fc6"]["kernel"].shape == (512, 4096)
    assert feature_shapes(model, (64, 64, 3))["fc8"] == (2, 2, CLASSES)
    with pytest.raises(InputTooSmallError, match=r"layer 'pool5'.*input of size 1"):
        _abstract(model, 31)
    with pytest.raises(ValueError, match="fc6_window must be at least 1"):
        _abstract(cnnjax.create_model("vgg11", fc6_window=0), 224)


# ------------------------------------------------------------------------- alexnet_tv


def test_alexnet_tv_count_and_param_names():
    variables = _abstract(cnnjax.create_model("alexnet_tv"), 224)
    params = variables["params"]
    assert _count(params) == 61_100_840  # model_zoo.md §3.1, torchvision's num_params
    assert set(variables) == {"params"}
    assert jax.tree.map(jnp.shape, params) == {
        name: {"kernel": shape, "bias": shape[-1:]} for name, shape in ALEXNET_TV_SHAPES.items()
    }
    spec = cnnjax.model_spec("alexnet_tv")
    assert (spec.input_shape, spec.num_classes) == ((224, 224, 3), 1000)
    assert spec.paper == "Krizhevsky 2014 (one weird trick), as torchvision"


def test_alexnet_tv_layer_names_are_documented():
    model = cnnjax.create_model("alexnet_tv")
    shapes = feature_shapes(model, (224, 224, 3))
    assert list(shapes) == [
        "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5",
        "drop5", "fc6", "drop6", "fc7", "fc8",
    ]  # fmt: skip
    assert shapes["conv1"] == (55, 55, 64) and shapes["pool5"] == (6, 6, 256)
    assert shapes["drop5"] == (9216,)
    doc = sys.modules[type(model).__module__].__doc__
    for name in ("drop5", "drop6", "alexnet_tv"):
        assert re.search(rf"`{name}`", doc), name


def test_alexnet_tv_runs_at_224_and_193():
    model, variables = _model_and_variables("alexnet_tv", 224)
    out, captured = _run(model, variables, _image(224))
    assert out.shape == (1, CLASSES) and captured["pool5"].shape == (1, 6, 6, 256)
    # At 224 the adaptive 6×6 pool is the identity: the plain classifier on pool5, no dropout.
    _assert_close(out, _plain_classifier(variables["params"], captured["pool5"]))
    # 193: (193 + 4 - 11)/4 + 1 = 47 -> 23 -> 11 -> 5, pooled up to 6×6 by overlapping bins.
    out, captured = _run(model, variables, _image(193))
    assert out.shape == (1, CLASSES) and captured["pool5"].shape == (1, 5, 5, 256)
    assert np.isfinite(out).all()


def test_alexnet_tv_takes_any_side_from_63():
    # 63: (63 + 4 - 11)/4 + 1 = 15 -> 7 -> 3 -> 1, pooled up to 6×6; 62 -> 14 -> 6 -> 2: no pool5.
    model = cnnjax.create_model("alexnet_tv", num_classes=CLASSES)
    x = jax.ShapeDtypeStruct((1, 63, 63, 3), jnp.float32)
    assert jax.eval_shape(model.apply, _abstract(model, 63), x).shape == (1, CLASSES)
    with pytest.raises(InputTooSmallError, match=r"layer 'pool5'.*input of size 2"):
        _abstract(model, 62)


def test_alexnet_tv_init_is_pytorch_default():
    # kaiming_uniform(a=√5): U(±√(6 / ((1 + 5) · fan_in))) = U(±1/√fan_in); biases the same.
    fan_in = 11 * 11 * 3
    bound = 1 / math.sqrt(fan_in)
    kernel = np.asarray(TORCH_KERNEL_INIT(jax.random.key(0), (11, 11, 3, 64)))
    bias = np.asarray(_torch_bias_init(fan_in)(jax.random.key(1), (4096,)))
    for values in (kernel, bias):
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.99 * bound
        assert np.var(values) == pytest.approx(bound**2 / 3, rel=0.1)

"""Family tests for the plain CNNs: AlexNet, ZFNet, VGG, NiN and Kim's sentence CNN.

Expected values come from the papers' tables, ../shared/reference/model_zoo.md, hand arithmetic
or a naive NumPy re-implementation; never from the code under test. Big models are only
traced (`jax.eval_shape`); real forward passes run on AlexNet at batch 1, NiN and TextCNN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax.layers import InputTooSmallError
from cnnjax.models.nin import NiN
from cnnjax.models.textcnn import (
    TextCNN,
    clip_fc_norms,
    embedding_param_count,
    load_embeddings,
)
from cnnjax.models.vgg import VGG
from cnnjax.models.zfnet import renormalize_filters


def _out(n: int, f: int, s: int, p: int = 0, ceil: bool = False) -> int:
    """Output length of a window f / stride s over n with p padding per side."""
    span = n + 2 * p - f
    return (-(-span // s) if ceil else span // s) + 1


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _abstract_init(model, shape, dtype=jnp.float32):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, dtype)))


def _intermediates(model, variables, x) -> dict:
    """{module name: its output} for the top-level submodules of one forward pass."""
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    return {
        k: v["__call__"][-1]
        for k, v in state["intermediates"].items()
        if isinstance(v, dict) and "__call__" in v
    }


def _abstract_intermediate_shapes(model, shape) -> dict:
    variables = _abstract_init(model, shape)
    out = jax.eval_shape(lambda v: _intermediates(model, v, jnp.zeros(shape)), variables)
    return {k: v.shape for k, v in out.items()}


def _layer_counts(params) -> dict:
    return {name: _count(layer) for name, layer in params.items()}


# --------------------------------------------------------------------------------- AlexNet

# model_zoo.md §3.1, per layer: (single tower, paper 2-GPU grouped).
ALEXNET_ROWS = {
    "conv1": (34_944, 34_944),
    "conv2": (614_656, 307_456),
    "conv3": (885_120, 885_120),
    "conv4": (1_327_488, 663_936),
    "conv5": (884_992, 442_624),
    "fc6": (37_752_832, 37_752_832),
    "fc7": (16_781_312, 16_781_312),
    "fc8": (4_097_000, 4_097_000),
}


def test_alexnet_per_layer_params_single_and_grouped():
    for column, name in enumerate(("alexnet", "alexnet_grouped")):
        params = _abstract_init(cnnjax.create_model(name), (1, 227, 227, 3))["params"]
        assert _layer_counts(params) == {k: v[column] for k, v in ALEXNET_ROWS.items()}
    assert sum(v[0] for v in ALEXNET_ROWS.values()) == 62_378_344
    assert sum(v[1] for v in ALEXNET_ROWS.values()) == 60_965_224


def test_alexnet_conv1_is_55x55x96_with_34944_params():
    model = cnnjax.create_model("alexnet")
    params = _abstract_init(model, (1, 227, 227, 3))["params"]
    assert params["conv1"]["kernel"].shape == (11, 11, 3, 96)
    assert _count(params["conv1"]) == 11 * 11 * 3 * 96 + 96 == 34_944
    assert _abstract_intermediate_shapes(model, (1, 227, 227, 3))["conv1"] == (1, 55, 55, 96)


def test_alexnet_spatial_sizes_follow_the_output_size_formula():
    conv1 = _out(227, 11, 4)
    pool1 = _out(conv1, 3, 2)
    conv2 = _out(pool1, 5, 1, 2)
    pool2 = _out(conv2, 3, 2)
    conv3 = _out(pool2, 3, 1, 1)
    pool5 = _out(conv3, 3, 2)
    assert (conv1, pool1, conv2, pool2, conv3, pool5) == (55, 27, 27, 13, 13, 6)  # paper Fig. 2
    shapes = _abstract_intermediate_shapes(cnnjax.create_model("alexnet"), (1, 227, 227, 3))
    assert shapes["norm1"] == (1, conv1, conv1, 96)
    assert shapes["pool1"] == (1, pool1, pool1, 96)
    assert shapes["conv2"] == (1, conv2, conv2, 256)
    assert shapes["pool2"] == (1, pool2, pool2, 256)
    for name, width in (("conv3", 384), ("conv4", 384), ("conv5", 256)):
        assert shapes[name] == (1, conv3, conv3, width)
    assert shapes["pool5"] == (1, pool5, pool5, 256)
    assert pool5 * pool5 * 256 == 9216  # fc6 inputs


def test_alexnet_grouped_kernels_see_half_the_channels():
    params = _abstract_init(cnnjax.create_model("alexnet_grouped"), (1, 227, 227, 3))["params"]
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)
    assert params["conv3"]["kernel"].shape == (3, 3, 256, 384)  # conv3 connects across GPUs
    assert params["conv4"]["kernel"].shape == (3, 3, 192, 384)
    assert params["conv5"]["kernel"].shape == (3, 3, 192, 256)


def test_alexnet_paper_224_input_is_too_small_for_its_fc6():
    # (224 - 11)/4 + 1 = 54 -> 26 -> 12 -> 5: the 5×5×256 map does not give fc6's 9216 inputs.
    assert _out(_out(_out(_out(224, 11, 4), 3, 2), 3, 2), 3, 2) == 5
    with pytest.raises(InputTooSmallError, match=r"layer 'pool5'.*input of size 2"):
        _abstract_init(cnnjax.create_model("alexnet"), (1, 64, 64, 3))


@pytest.fixture(scope="module")
def alexnet_run():
    model = cnnjax.create_model("alexnet")
    x = jax.random.normal(jax.random.key(1), (1, 227, 227, 3))
    return model, jax.jit(model.init)(jax.random.key(0), x), x


def test_alexnet_init_follows_the_paper(alexnet_run):
    _, variables, _ = alexnet_run
    params = variables["params"]
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):  # Sec. 5: biases 1
        np.testing.assert_array_equal(params[name]["bias"], 1.0)
    for name in ("conv1", "conv3", "fc8"):  # ... and 0 elsewhere
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
    for name in ALEXNET_ROWS:  # weights N(0, 0.01²); conv1 has the fewest, 34,848 samples
        kernel = np.asarray(params[name]["kernel"])
        assert abs(kernel.std() - 0.01) < 0.0003, name
        assert abs(kernel.mean()) < 0.0003, name


def _naive_lrn(a: np.ndarray, n=5, k=2.0, alpha=1e-4, beta=0.75) -> np.ndarray:
    """Krizhevsky et al. Sec. 3.3, channel by channel."""
    out = np.empty_like(a)
    channels = a.shape[-1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        out[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo : hi + 1] ** 2, axis=-1)) ** beta
    return out


def _naive_max_pool(x: np.ndarray, f: int, s: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, (f, f), axis=(1, 2))
    return windows[:, ::s, ::s].max(axis=(-2, -1))


def test_alexnet_relu_lrn_then_pool_order(alexnet_run):
    model, variables, x = alexnet_run
    out = jax.jit(lambda v, x: _intermediates(model, v, x))(variables, x)
    conv1, norm1, pool1 = (np.asarray(out[k], np.float64) for k in ("conv1", "norm1", "pool1"))
    np.testing.assert_allclose(norm1, _naive_lrn(np.maximum(conv1, 0)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pool1, _naive_max_pool(norm1, 3, 2), rtol=1e-6)


def test_alexnet_dropout_only_in_training(alexnet_run):
    model, variables, x = alexnet_run
    apply = jax.jit(model.apply, static_argnames="train")
    train_a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    train_b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    eval_a = apply(variables, x, train=False, rngs={"dropout": jax.random.key(1)})
    eval_b = apply(variables, x, train=False)
    assert not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(eval_a, eval_b)


# ----------------------------------------------------------------------------------- ZFNet


def test_zfnet_map_sizes_are_the_figures_110_55_26_13_6():
    conv1 = _out(224, 7, 2, 1)
    pool1 = _out(conv1, 3, 2, ceil=True)
    conv2 = _out(pool1, 5, 2)
    pool2 = _out(conv2, 3, 2, ceil=True)
    pool5 = _out(pool2, 3, 2, ceil=True)
    assert (conv1, pool1, conv2, pool2, pool5) == (110, 55, 26, 13, 6)
    shapes = _abstract_intermediate_shapes(cnnjax.create_model("zfnet"), (1, 224, 224, 3))
    assert shapes["conv1"] == (1, 110, 110, 96)
    assert shapes["pool1"] == shapes["norm1"] == (1, 55, 55, 96)
    assert shapes["conv2"] == (1, 26, 26, 256)
    assert shapes["pool2"] == shapes["norm2"] == (1, 13, 13, 256)
    assert shapes["conv5"] == (1, 13, 13, 256)
    assert shapes["pool5"] == (1, 6, 6, 256)


def test_zfnet_differs_from_single_tower_alexnet_only_in_conv1():
    zf = _layer_counts(_abstract_init(cnnjax.create_model("zfnet"), (1, 224, 224, 3))["params"])
    assert zf["conv1"] == 7 * 7 * 3 * 96 + 96 == 14_208
    assert {k: v for k, v in zf.items() if k != "conv1"} == {
        k: v[0] for k, v in ALEXNET_ROWS.items() if k != "conv1"
    }


def test_zfnet_init_weights_1e_2_biases_0():
    model = cnnjax.create_model("zfnet")
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    for name, layer in params.items():
        np.testing.assert_array_equal(layer["bias"], 0.0)
        assert abs(float(jnp.std(layer["kernel"])) - 0.01) < 0.0003, name


def test_renormalize_filters_caps_filter_rms_at_0_1():
    rng = np.random.default_rng(0)
    kernel = np.zeros((2, 2, 3, 4), np.float32)
    kernel[..., 0] = 0.5  # RMS 0.5: shrunk to 0.1
    kernel[..., 1] = 0.05  # RMS 0.05: untouched
    kernel[..., 2] = rng.normal(0, 0.2, (2, 2, 3))  # RMS ~0.2: shrunk to 0.1
    params = {
        "conv1": {"kernel": kernel, "bias": np.full(4, 7.0)},
        "fc6": {"kernel": np.ones((3, 2))},
    }
    out = renormalize_filters(params)
    new = np.asarray(out["conv1"]["kernel"])
    rms = np.sqrt(np.mean(new**2, axis=(0, 1, 2)))
    np.testing.assert_allclose(rms, [0.1, 0.05, 0.1, 0.0], rtol=1e-5)
    old_rms = np.sqrt(np.mean(kernel[..., 2] ** 2))
    np.testing.assert_allclose(
        new[..., 2], kernel[..., 2] * 0.1 / old_rms, rtol=1e-5
    )  # same direction
    np.testing.assert_array_equal(out["conv1"]["bias"], 7.0)
    np.testing.assert_array_equal(out["fc6"]["kernel"], 1.0)  # dense layers are not filters


# ------------------------------------------------------------------------------------- VGG

# model_zoo.md §5.1 (CS231n's table re-derived): weights + bias per layer of VGG-16.
VGG16_ROWS = {
    "conv1_1": 1_792,
    "conv1_2": 36_928,
    "conv2_1": 73_856,
    "conv2_2": 147_584,
    "conv3_1": 295_168,
    "conv3_2": 590_080,
    "conv3_3": 590_080,
    "conv4_1": 1_180_160,
    "conv4_2": 2_359_808,
    "conv4_3": 2_359_808,
    "conv5_1": 2_359_808,
    "conv5_2": 2_359_808,
    "conv5_3": 2_359_808,
    "fc6": 102_764_544,
    "fc7": 16_781_312,
    "fc8": 4_097_000,
}


def test_vgg16_per_layer_params_match_the_table():
    params = _abstract_init(cnnjax.create_model("vgg16"), (1, 224, 224, 3))["params"]
    assert _layer_counts(params) == VGG16_ROWS
    assert sum(VGG16_ROWS.values()) == 138_357_544


@pytest.mark.parametrize("name,depth", [("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)])
def test_vgg_depth_counts_weight_layers(name, depth):
    params = _abstract_init(cnnjax.create_model(name), (1, 224, 224, 3))["params"]
    convs = [k for k in params if k.startswith("conv")]
    assert len(convs) + 3 == depth  # the paper's depth counts conv + 3 FC layers
    assert all(params[k]["conv"]["kernel"].shape[:2] == (3, 3) for k in convs)


def test_vgg_pools_halve_224_to_7():
    shapes = _abstract_intermediate_shapes(cnnjax.create_model("vgg11"), (1, 224, 224, 3))
    assert [shapes[f"pool{i}"][1] for i in range(1, 6)] == [112, 56, 28, 14, 7]
    assert shapes["pool5"] == (1, 7, 7, 512)


def test_vgg16_bn_has_8448_bn_stats_and_keeps_conv_bias():
    widths = [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6  # config D
    variables = _abstract_init(cnnjax.create_model("vgg16_bn"), (1, 224, 224, 3))
    assert _count(variables["batch_stats"]) == 2 * sum(widths) == 8_448
    bn_params = sum(
        _count(layer["bn"]) for name, layer in variables["params"].items() if "bn" in layer
    )
    assert bn_params == 8_448  # gamma and beta
    assert variables["params"]["conv1_1"]["conv"]["bias"].shape == (64,)
    assert _count(variables["params"]) == 138_357_544 + 8_448


def test_vgg_bn_uses_batch_statistics_in_training():
    model = VGG(num_classes=3, config="A", batch_norm=True)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3)) * 3 + 1
    variables = jax.jit(model.init)(jax.random.key(0), x)
    _, updates = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"]
    )
    # momentum 0.9 from mean 0: the new running mean of the first BN is 0.1 x the batch mean
    conv = (
        jax.lax.conv_general_dilated(
            x,
            variables["params"]["conv1_1"]["conv"]["kernel"],
            (1, 1),
            [(1, 1), (1, 1)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        + variables["params"]["conv1_1"]["conv"]["bias"]
    )
    np.testing.assert_allclose(
        updates["batch_stats"]["conv1_1"]["bn"]["mean"],
        0.1 * conv.mean(axis=(0, 1, 2)),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "weight_init,std", [("glorot", math.sqrt(2 / (3 * 3 * 512 * 2))), ("gaussian", 0.01)]
)
def test_vgg_weight_init(weight_init, std):
    model = VGG(num_classes=10, config="A", weight_init=weight_init)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    kernel = np.asarray(params["conv5_2"]["conv"]["kernel"])  # 3×3×512×512
    assert abs(kernel.std() - std) / std < 0.01  # Glorot: Var = 2 / (fan_in + fan_out)
    if weight_init == "glorot":
        assert np.abs(kernel).max() <= math.sqrt(6 / (2 * 3 * 3 * 512))
    np.testing.assert_array_equal(params["conv5_2"]["conv"]["bias"], 0.0)
    np.testing.assert_array_equal(params["fc6"]["bias"], 0.0)


def test_vgg_bad_config_and_small_input_errors():
    with pytest.raises(ValueError, match="config 'C'.*A, B, D, E"):
        _abstract_init(VGG(config="C"), (1, 224, 224, 3))
    with pytest.raises(ValueError, match="weight_init 'he'"):
        _abstract_init(VGG(weight_init="he"), (1, 224, 224, 3))
    # 16 -> 8 -> 4 -> 2 -> 1: the fifth 2×2 pool has nothing left to pool
    with pytest.raises(InputTooSmallError, match=r"layer 'pool5'.*input of size 1"):
        _abstract_init(cnnjax.create_model("vgg16"), (1, 16, 16, 3))


# ------------------------------------------------------------------------------------- NiN


def test_nin_block_params_by_hand():
    def conv(f, cin, cout):
        return f * f * cin * cout + cout

    blocks = {
        "mlpconv1": conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96),
        "mlpconv2": conv(5, 96, 192) + conv(1, 192, 192) + conv(1, 192, 192),
        "mlpconv3": conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10),
    }
    params = _abstract_init(cnnjax.create_model("nin"), (1, 32, 32, 3))["params"]
    assert _layer_counts(params) == blocks
    assert sum(blocks.values()) == 966_986


@pytest.fixture(scope="module")
def nin_run():
    model = cnnjax.create_model("nin")
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    return model, jax.jit(model.init)(jax.random.key(0), x), x


def test_nin_caffe_pools_and_global_average(nin_run):
    model, variables, x = nin_run
    out = jax.jit(lambda v, x: _intermediates(model, v, x))(variables, x)
    pool1, pool2 = _out(32, 3, 2, ceil=True), _out(16, 3, 2, ceil=True)
    assert (pool1, pool2) == (16, 8)  # Caffe rounds up; floor would give 15 and 7
    assert out["pool1"].shape == (2, 16, 16, 96)
    assert out["pool2"].shape == (2, 8, 8, 192)
    # Caffe's average pool divides by the window's part inside the input: the last row and
    # column of windows (start 14) cover 2 of 3 positions.
    block2 = np.asarray(out["mlpconv2"], np.float64)
    np.testing.assert_allclose(
        out["pool2"][:, 7, 7], block2[:, 14:, 14:].mean(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        out["pool2"][:, 0, 7], block2[:, :3, 14:].mean(axis=(1, 2)), rtol=1e-5
    )
    logits = model.apply(variables, x)
    assert logits.shape == (2, 10)
    np.testing.assert_allclose(logits, np.asarray(out["mlpconv3"]).mean(axis=(1, 2)), rtol=1e-5)
    assert np.all(np.asarray(logits) >= 0)  # ReLU on the class maps, as in the authors' configs


def test_nin_dropout_only_in_training(nin_run):
    model, variables, x = nin_run
    apply = jax.jit(model.apply, static_argnames="train")
    train_a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    train_b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    eval_a = apply(variables, x, train=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(eval_a, apply(variables, x, train=False))
    no_dropout = NiN(dropout_rate=0.0)
    np.testing.assert_allclose(
        no_dropout.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)}),
        apply(variables, x, train=False),
        rtol=1e-6,
    )


def test_nin_bf16_compute_keeps_float32_params(nin_run):
    _, variables, x = nin_run
    model = cnnjax.create_model("nin", dtype=jnp.bfloat16)
    logits = model.apply(variables, x)
    assert logits.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    reference = cnnjax.create_model("nin").apply(variables, x)
    np.testing.assert_allclose(np.asarray(logits, np.float32), reference, rtol=0.1, atol=0.05)


# ----------------------------------------------------------------------------- Kim TextCNN


def _kim_count(classes: int, windows=(3, 4, 5), maps=100, dim=300) -> int:
    return sum(windows) * dim * maps + len(windows) * maps + len(windows) * maps * classes + classes


@pytest.mark.parametrize("classes,expected", [(2, 360_902), (5, 361_805)])
def test_textcnn_params_excluding_embedding(classes, expected):
    assert (
        _kim_count(classes) == (3 + 4 + 5) * 300 * 100 + 300 + 300 * classes + classes == expected
    )
    model = cnnjax.create_model("textcnn", num_classes=classes, vocab_size=18_766)
    params = _abstract_init(model, (1, 64), jnp.int32)["params"]
    assert embedding_param_count(params) == 18_766 * 300 == 5_629_800  # MR: (|V| + 1)·300
    assert _count(params) - embedding_param_count(params) == expected


def _small(mode: str, **kw) -> TextCNN:
    return TextCNN(
        vocab_size=30, embed_dim=6, windows=(2, 3), maps=4, mode=mode, num_classes=3, **kw
    )


def _naive_textcnn(ids, channels, params, windows, pad) -> np.ndarray:
    """Kim's forward pass, the paper's way: each filter over each channel, results summed."""
    ids = np.pad(ids, ((0, 0), (pad, pad)))
    inputs = [np.asarray(table, np.float64)[ids] * (ids != 0)[..., None] for table in channels]
    features = []
    for h in windows:
        kernel = np.asarray(params[f"conv_h{h}"]["kernel"], np.float64)
        bias = np.asarray(params[f"conv_h{h}"]["bias"], np.float64)
        steps = ids.shape[1] - h + 1
        c = sum(
            np.stack([np.einsum("bhe,hem->bm", x[:, t : t + h], kernel) for t in range(steps)], 1)
            for x in inputs
        )
        features.append(np.maximum(c + bias, 0).max(axis=1))
    z = np.concatenate(features, axis=-1)
    return z @ np.asarray(params["fc"]["kernel"]) + np.asarray(params["fc"]["bias"])


@pytest.mark.parametrize("mode", ["rand", "static", "non-static", "multichannel"])
def test_textcnn_matches_naive_forward(mode):
    model = _small(mode)
    ids = np.array([[5, 9, 2, 0, 0], [7, 1, 1, 3, 29]], np.int32)
    variables = model.init(jax.random.key(0), ids)
    if mode == "multichannel":  # make the two channels differ, as after some fine-tuning
        noise = jax.random.normal(jax.random.key(3), variables["params"]["embedding"].shape)
        variables = {**variables, "params": {**variables["params"]}}
        variables["params"]["embedding"] = variables["params"]["embedding"] + noise
    params = variables["params"]
    channels = {
        "rand": [params.get("embedding")],
        "non-static": [params.get("embedding")],
        "static": [variables.get("embeddings", {}).get("static")],
        "multichannel": [params.get("embedding"), variables.get("embeddings", {}).get("static")],
    }[mode]
    want = _naive_textcnn(ids, channels, params, (2, 3), pad=2)  # h_max - 1 = 2 zeros per side
    np.testing.assert_allclose(model.apply(variables, ids), want, rtol=1e-4, atol=1e-5)


def test_textcnn_static_table_is_outside_params():
    model = _small("static")
    ids = jnp.array([[3, 4, 5, 6]])
    variables = model.init(jax.random.key(0), ids)
    assert "embedding" not in variables["params"]
    assert variables["embeddings"]["static"].shape == (30, 6)
    assert embedding_param_count(variables["params"]) == 0
    grads = jax.grad(lambda p: model.apply({**variables, "params": p}, ids).sum())(
        variables["params"]
    )
    assert set(grads) == {"conv_h2", "conv_h3", "fc"}


def test_textcnn_multichannel_copies_start_equal_and_only_one_trains():
    model = _small("multichannel")
    ids = jnp.array([[3, 4, 5, 6]])
    variables = model.init(jax.random.key(0), ids)
    np.testing.assert_array_equal(
        variables["params"]["embedding"], variables["embeddings"]["static"]
    )
    grads = jax.grad(lambda p: model.apply({**variables, "params": p}, ids).sum())(
        variables["params"]
    )
    assert float(jnp.abs(grads["embedding"][3:7]).sum()) > 0  # the used rows of the trainable copy


def test_textcnn_padding_row_never_matters():
    model = _small("non-static")
    ids = jnp.array([[4, 8, 0, 0], [1, 2, 3, 0]])
    variables = model.init(jax.random.key(0), ids)
    assert not np.any(variables["params"]["embedding"][0])  # kim_uniform: pad row 0
    assert np.abs(variables["params"]["embedding"]).max() <= 0.25
    changed = {**variables, "params": {**variables["params"]}}
    changed["params"]["embedding"] = changed["params"]["embedding"].at[0].set(5.0)
    np.testing.assert_array_equal(model.apply(variables, ids), model.apply(changed, ids))


def test_textcnn_pad_true_equals_manual_kim_padding():
    padded, unpadded = _small("rand"), _small("rand", pad=False)
    ids = jnp.array([[4, 8, 9]])
    variables = padded.init(jax.random.key(0), ids)
    manual = jnp.pad(ids, ((0, 0), (2, 2)))  # h_max - 1 = 2 for windows (2, 3)
    np.testing.assert_array_equal(padded.apply(variables, ids), unpadded.apply(variables, manual))
    assert padded.apply(variables, jnp.array([[7]])).shape == (1, 3)  # one word is enough


def test_textcnn_input_errors():
    model = cnnjax.create_model("textcnn", pad=False)
    with pytest.raises(InputTooSmallError, match=r"length 4 is too small.*5-word.*pad=True"):
        _abstract_init(model, (1, 4), jnp.int32)
    _abstract_init(model, (1, 5), jnp.int32)  # exactly the widest window fits
    with pytest.raises(ValueError, match="integer token ids of shape \\(batch, length\\)"):
        _abstract_init(cnnjax.create_model("textcnn"), (1, 64, 300))
    with pytest.raises(ValueError, match="integer token ids"):
        _abstract_init(cnnjax.create_model("textcnn"), (1, 64), jnp.float32)
    with pytest.raises(ValueError, match="mode 'dynamic'.*multichannel"):
        _abstract_init(cnnjax.create_model("textcnn", mode="dynamic"), (1, 64), jnp.int32)


@pytest.mark.parametrize(
    "mode,slots",
    [
        ("rand", [("params", "embedding")]),
        ("non-static", [("params", "embedding")]),
        ("static", [("embeddings", "static")]),
        ("multichannel", [("params", "embedding"), ("embeddings", "static")]),
    ],
)
def test_load_embeddings_fills_the_modes_slots(mode, slots):
    model = _small(mode)
    variables = model.init(jax.random.key(0), jnp.array([[1, 2, 3]]))
    table = np.arange(30 * 6, dtype=np.float32).reshape(30, 6)
    loaded = load_embeddings(variables, table)
    for collection, name in slots:
        np.testing.assert_array_equal(loaded[collection][name], table)
    np.testing.assert_array_equal(
        loaded["params"]["fc"]["kernel"], variables["params"]["fc"]["kernel"]
    )
    with pytest.raises(ValueError, match="vocab_size=31, embed_dim=6"):
        load_embeddings(variables, np.zeros((31, 6)))


def test_clip_fc_norms_caps_each_class_column_at_3():
    kernel = np.zeros((4, 3), np.float32)
    kernel[:, 0] = [3.0, 4.0, 0.0, 0.0]  # norm 5 -> 3
    kernel[:, 1] = [1.0, 0.0, 0.0, 0.0]  # norm 1: kept
    kernel[:, 2] = [0.0, 0.0, 6.0, 8.0]  # norm 10 -> 3
    params = {"fc": {"kernel": kernel, "bias": np.ones(3)}, "conv_h3": {"kernel": np.full(2, 50.0)}}
    out = clip_fc_norms(params)
    np.testing.assert_allclose(out["fc"]["kernel"][:, 0], [1.8, 2.4, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(out["fc"]["kernel"][:, 1], kernel[:, 1])
    np.testing.assert_allclose(out["fc"]["kernel"][:, 2], [0, 0, 1.8, 2.4], rtol=1e-6)
    np.testing.assert_array_equal(out["conv_h3"]["kernel"], 50.0)  # Kim caps only the softmax


def test_textcnn_dropout_only_in_training_and_bf16():
    model = cnnjax.create_model("textcnn", vocab_size=100)
    ids = jax.random.randint(jax.random.key(1), (4, 20), 1, 100)
    variables = model.init(jax.random.key(0), ids)
    train_a = model.apply(variables, ids, train=True, rngs={"dropout": jax.random.key(1)})
    train_b = model.apply(variables, ids, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(model.apply(variables, ids), model.apply(variables, ids))
    low = cnnjax.create_model("textcnn", vocab_size=100, dtype=jnp.bfloat16)
    logits = low.apply(variables, ids)
    assert logits.dtype == jnp.bfloat16 and logits.shape == (4, 2)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))


# ------------------------------------------------------------------------------ all families


@pytest.mark.parametrize("name", ["alexnet", "alexnet_grouped", "zfnet", "vgg16", "vgg16_bn"])
def test_bf16_compute_float32_params(name):
    spec = cnnjax.model_spec(name)
    model = cnnjax.create_model(name, dtype=jnp.bfloat16)
    shape = (2, *spec.input_shape)
    variables = _abstract_init(model, shape)
    logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape)), variables)
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, spec.num_classes)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))

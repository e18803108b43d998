"""GoogLeNet, ResNet and DenseNet: their blocks and family-specific behaviour.

Expected values are computed independently: parameter counts by hand formulas, shapes by the
output-size arithmetic, MACs against torchvision's published GFLOPS (= GMACs, model_zoo.md
§7.1), layer outputs against naive re-implementations on tiny inputs. Big models are only
traced with `jax.eval_shape`; real forward passes run on 32×32 CIFAR nets and tiny blocks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import cnnjax
from cnnjax.layers import (
    BasicBlock,
    BottleneckBlock,
    ConvBNAct,
    DenseBlock,
    DenseLayer,
    Inception,
    InputTooSmallError,
    Transition,
    adaptive_avg_pool,
    zero_pad_shortcut,
)
from cnnjax.models import googlenet as googlenet_module
from cnnjax.models.resnet import cifar_blocks_per_stage

KEY = jax.random.key(0)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _abstract_init(model, shape, **kwargs):
    return jax.eval_shape(lambda: model.init(KEY, jnp.zeros(shape), **kwargs))


def _intermediate_shapes(model, shape, **kwargs) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Output shape of every submodule call, keyed by its path (traced, nothing computed)."""
    x = jnp.zeros(shape)
    variables = _abstract_init(model, shape)
    apply = lambda v: model.apply(  # noqa: E731
        v, x, capture_intermediates=True, mutable=["intermediates"], **kwargs
    )
    _, state = jax.eval_shape(apply, variables)
    flat = traverse_util.flatten_dict(state["intermediates"])
    return {path[:-1]: out[0].shape for path, out in flat.items() if path[-1] == "__call__"}


def _macs(model, shape) -> int:
    """Conv + FC multiply-accumulates per example: output pixels × kernel size, per layer."""
    outputs = _intermediate_shapes(model, shape)
    params = traverse_util.flatten_dict(_abstract_init(model, shape)["params"])
    total = 0
    for path, leaf in params.items():
        if path[-1] == "kernel":
            out = outputs[path[:-1]]
            total += math.prod(out[1:-1]) * math.prod(leaf.shape)
    return total


# --- Inception / GoogLeNet -------------------------------------------------------------------


def _conv_params(c_in: int, c_out: int, k: int, bn: bool) -> int:
    return k * k * c_in * c_out + (2 * c_out if bn else c_out)  # BN gamma+beta, else a bias


@pytest.mark.parametrize("batch_norm", [False, True])
def test_inception_3a_channels_and_parameter_count(batch_norm):
    # Paper Table 1, inception (3a) on 28×28×192: 64 + 128 + 32 + 32 = 256 output channels.
    block = Inception(64, 96, 128, 16, 32, 32, five_by_five=not batch_norm, batch_norm=batch_norm)
    variables = _abstract_init(block, (1, 28, 28, 192))
    out = jax.eval_shape(lambda v: block.apply(v, jnp.zeros((1, 28, 28, 192))), variables)
    assert out.shape == (1, 28, 28, 256)
    wide = 3 if batch_norm else 5
    expected = (
        _conv_params(192, 64, 1, batch_norm)
        + _conv_params(192, 96, 1, batch_norm)
        + _conv_params(96, 128, 3, batch_norm)
        + _conv_params(192, 16, 1, batch_norm)
        + _conv_params(16, 32, wide, batch_norm)
        + _conv_params(192, 32, 1, batch_norm)
    )
    assert _count(variables["params"]) == expected
    # The paper's Table 1 counts weights only: 163,328 for 3a ("159K" with K = 1024).
    if not batch_norm:
        assert expected - (64 + 96 + 128 + 16 + 32 + 32) == 163_328
    assert variables["params"]["5x5"]["conv"]["kernel"].shape == (wide, wide, 16, 32)


def test_inception_concatenates_branches_in_table_order():
    # With only the pool branch non-zero, the last `pool proj` channels carry max-pool → 1×1.
    block = Inception(2, 2, 3, 2, 4, 5)
    x = jax.random.normal(KEY, (1, 5, 5, 3))
    variables = block.init(KEY, x)
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, a: a if "pool_proj" in jax.tree_util.keystr(path) else jnp.zeros_like(a),
        variables,
    )
    out = np.asarray(block.apply(zeroed, x))
    assert out.shape == (1, 5, 5, 2 + 3 + 4 + 5)
    np.testing.assert_array_equal(out[..., :9], 0.0)
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    pooled = np.max(
        [padded[:, i : i + 5, j : j + 5, :] for i in range(3) for j in range(3)], axis=0
    )
    proj = variables["params"]["pool_proj"]["conv"]
    expected = np.maximum(pooled @ np.asarray(proj["kernel"][0, 0]) + np.asarray(proj["bias"]), 0)
    np.testing.assert_allclose(out[..., 9:], expected, rtol=1e-5, atol=1e-5)


def test_adaptive_avg_pool_uses_pytorch_bins():
    x = jax.random.normal(KEY, (2, 14, 14, 3))
    out = np.asarray(adaptive_avg_pool(x, (4, 4)))
    # PyTorch bins for 14 -> 4: [0,4), [3,7), [7,11), [10,14) (overlapping), written out by hand.
    bins = [(0, 4), (3, 7), (7, 11), (10, 14)]
    xn = np.asarray(x)
    for i, (r0, r1) in enumerate(bins):
        for j, (c0, c1) in enumerate(bins):
            np.testing.assert_allclose(
                out[:, i, j], xn[:, r0:r1, c0:c1].mean(axis=(1, 2)), rtol=1e-6, atol=1e-6
            )
    # A divisible size is a plain average pool: 8 -> 4 averages 2×2 blocks.
    y = np.asarray(jax.random.normal(KEY, (1, 8, 8, 2)))
    blocks = y.reshape(1, 4, 2, 4, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(adaptive_avg_pool(y, (4, 4)), blocks, rtol=1e-6, atol=1e-6)


def test_aux_loss_weight_is_the_papers():
    assert googlenet_module.AUX_LOSS_WEIGHT == 0.3


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_googlenet_returns_aux_logits_only_in_training(name):
    model = cnnjax.create_model(name, num_classes=7)
    x = jnp.zeros((2, 224, 224, 3))
    variables = _abstract_init(model, x.shape)
    rngs = {"dropout": jax.random.key(1)}
    train_out, _ = jax.eval_shape(
        lambda v: model.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"]), variables
    )
    logits, (aux1, aux2) = train_out
    assert logits.shape == aux1.shape == aux2.shape == (2, 7)
    eval_out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert isinstance(eval_out, jax.ShapeDtypeStruct) and eval_out.shape == (2, 7)
    # The heads exist whichever mode init ran in, so an eval-initialised model can train.
    trained_init = jax.eval_shape(
        lambda: model.init({"params": KEY, "dropout": KEY}, x, train=True)
    )
    assert jax.tree.structure(trained_init) == jax.tree.structure(variables)
    assert {"aux1", "aux2"} <= set(variables["params"])


def _aux_head_params(c_in: int, classes: int, bn: bool) -> int:
    # 1×1 conv 128 (bias, or BN γ/β), FC 4·4·128 = 2048 → 1024, FC 1024 → classes.
    return _conv_params(c_in, 128, 1, bn) + (2048 * 1024 + 1024) + (1024 * classes + classes)


@pytest.mark.parametrize(("name", "bn"), [("googlenet", False), ("googlenet_bn", True)])
def test_googlenet_aux_heads_hold_the_expected_parameters(name, bn):
    # Heads on inception 4a (512 channels) and 4d (528): 6,379,728 (paper) / 6,379,984 (BN).
    shape = (1, 224, 224, 3)
    with_aux = _abstract_init(cnnjax.create_model(name), shape)
    without = _abstract_init(cnnjax.create_model(name, aux_logits=False), shape)
    dropped = _count(with_aux["params"]) - _count(without["params"])
    expected = _aux_head_params(512, 1000, bn) + _aux_head_params(528, 1000, bn)
    assert dropped == expected == (6_379_984 if bn else 6_379_728)
    assert "aux1" not in without["params"]
    stats_dropped = _count(with_aux.get("batch_stats", {})) - _count(without.get("batch_stats", {}))
    assert stats_dropped == (2 * 2 * 128 if bn else 0)


def test_googlenet_paper_and_bn_variants_differ_where_documented():
    paper = _abstract_init(cnnjax.create_model("googlenet"), (1, 224, 224, 3))["params"]
    bn = _abstract_init(cnnjax.create_model("googlenet_bn"), (1, 224, 224, 3))["params"]
    assert paper["inception_3a"]["5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    assert bn["inception_3a"]["5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)  # vision#906
    assert "bias" in paper["conv1"]["conv"] and "bn" not in paper["conv1"]
    assert "bias" not in bn["conv1"]["conv"] and "bn" in bn["conv1"]


def test_googlenet_paper_aux_pool_needs_a_big_enough_input():
    # At 64×64 inception 4a is 4×4, too small for the paper's 5×5/3 aux pool; without the
    # heads the network fits (pool4 sees 4×4 -> 2×2).
    with pytest.raises(InputTooSmallError, match=r"aux1/pool.*\(4 - 5"):
        _abstract_init(cnnjax.create_model("googlenet"), (1, 64, 64, 3))
    variables = _abstract_init(cnnjax.create_model("googlenet", aux_logits=False), (1, 64, 64, 3))
    assert "aux1" not in variables["params"]


# --- ResNet -----------------------------------------------------------------------------------


def _bn(c: int) -> int:
    return 2 * c


def test_bottleneck_block_parameter_count_by_formula():
    # Identity shortcut: 256 -> [1×1 64, 3×3 64, 1×1 256] -> 256.
    block = BottleneckBlock(64)
    params = _abstract_init(block, (1, 8, 8, 256))["params"]
    body = 256 * 64 + 9 * 64 * 64 + 64 * 256 + _bn(64) + _bn(64) + _bn(256)
    assert _count(params) == body == 70_400
    # Projection shortcut (64 -> 256 channels, option B): + 1×1 conv 64·256 + BN(256).
    projected = _abstract_init(block, (1, 8, 8, 64))["params"]
    expected = 64 * 64 + 9 * 64 * 64 + 64 * 256 + _bn(64) + _bn(64) + _bn(256) + 64 * 256 + _bn(256)
    assert _count(projected) == expected
    assert projected["shortcut"]["conv"]["kernel"].shape == (1, 1, 64, 256)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_basic_block_parameter_count_by_formula(shortcut):
    block = BasicBlock(32, strides=2, shortcut=shortcut)
    params = _abstract_init(block, (1, 8, 8, 16))["params"]
    body = 9 * 16 * 32 + 9 * 32 * 32 + _bn(32) + _bn(32)
    projection = 16 * 32 + _bn(32) if shortcut == "B" else 0
    assert _count(params) == body + projection
    assert ("shortcut" in params) == (shortcut == "B")


def test_v1_and_v1_5_have_the_same_parameters_but_stride_in_different_places():
    x_shape = (1, 16, 16, 64)
    v15, v1 = BottleneckBlock(32, strides=2), BottleneckBlock(32, strides=2, v1=True)
    assert jax.tree.map(lambda a: a.shape, _abstract_init(v15, x_shape)) == jax.tree.map(
        lambda a: a.shape, _abstract_init(v1, x_shape)
    )
    s15, s1 = _intermediate_shapes(v15, x_shape), _intermediate_shapes(v1, x_shape)
    assert s15[("conv1",)] == (1, 16, 16, 32) and s15[("conv2",)] == (1, 8, 8, 32)  # v1.5: on 3×3
    assert s1[("conv1",)] == (1, 8, 8, 32) and s1[("conv2",)] == (1, 8, 8, 32)  # v1: on 1×1
    assert s15[("conv3",)] == s1[("conv3",)] == (1, 8, 8, 128)


def test_resnet50_macs_match_torchvision_for_v1_5_and_the_paper_for_v1():
    # model_zoo.md §7.1: torchvision "GFLOPS" (= GMACs) 4.089 for v1.5, 3.858 for v1 (paper 3.8).
    shape = (1, 224, 224, 3)
    v15 = _macs(cnnjax.create_model("resnet50"), shape)
    v1 = _macs(cnnjax.create_model("resnet50", v1=True), shape)
    assert round(v15 / 1e9, 3) == 4.089
    assert round(v1 / 1e9, 3) == 3.858
    # Where the difference comes from, by hand: in each of the 3 strided blocks v1.5 runs the
    # 1×1 reduce on all side² input pixels, v1 (stride 2) on side²/4 of them; the 3×3 and the
    # 1×1 expand work at the output resolution in both.
    diff = 0
    for side, c_in, width in [(56, 256, 128), (28, 512, 256), (14, 1024, 512)]:
        diff += c_in * width * (side**2 - (side // 2) ** 2)
    assert v15 - v1 == diff


def test_zero_pad_shortcut_equals_a_hand_built_subsample():
    x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
    out = np.asarray(zero_pad_shortcut(x, 5, 2))
    expected = np.zeros((2, 2, 2, 5), np.float32)
    xn = np.asarray(x)
    for i in range(2):
        for j in range(2):
            expected[:, i, j, :2] = xn[:, 2 * i, 2 * j, :]  # pixels (0,0), (0,2), (2,0), (2,2)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="shortcut='B'"):
        zero_pad_shortcut(x, 1)


def test_option_a_block_adds_zero_padded_input_to_the_branch():
    block = BasicBlock(4, strides=2, shortcut="A", zero_init_residual=True)
    x = jax.random.normal(KEY, (1, 6, 6, 2))
    variables = block.init(KEY, x)
    # The residual branch is zero at init (γ = 0), so the output is ReLU(shortcut) exactly.
    subsampled = np.asarray(x)[:, ::2, ::2, :]
    expected = np.maximum(np.concatenate([subsampled, np.zeros((1, 3, 3, 2))], axis=-1), 0)
    np.testing.assert_allclose(block.apply(variables, x), expected, atol=1e-6)


@pytest.mark.parametrize("block", [BasicBlock(6), BottleneckBlock(2)])
@pytest.mark.parametrize("train", [False, True])
def test_zero_init_residual_makes_blocks_identity_plus_relu(block, train):
    x = jax.random.normal(KEY, (2, 5, 5, 6 if isinstance(block, BasicBlock) else 8))
    zero = block.clone(zero_init_residual=True)
    variables = zero.init(KEY, x)
    out, _ = zero.apply(variables, x, train=train, mutable=["batch_stats"])
    np.testing.assert_allclose(out, np.maximum(np.asarray(x), 0), atol=1e-6)
    default_out, _ = block.apply(block.init(KEY, x), x, train=train, mutable=["batch_stats"])
    assert not np.allclose(default_out, np.maximum(np.asarray(x), 0))


def test_option_b_adds_2752_parameters_to_resnet20():
    shape = (1, 32, 32, 3)
    a = _abstract_init(cnnjax.create_model("resnet20"), shape)
    b = _abstract_init(cnnjax.create_model("resnet20", shortcut="B"), shape)
    # Projections at the two downsampling points: 16->32 and 32->64 (1×1 conv + BN).
    extra = (16 * 32 + _bn(32)) + (32 * 64 + _bn(64))
    assert _count(b["params"]) - _count(a["params"]) == extra == 2_752
    assert _count(b["params"]) == 272_474
    assert _count(b["batch_stats"]) - _count(a["batch_stats"]) == 2 * (32 + 64)


def test_unknown_shortcut_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown shortcut 'C'.*'A'.*'B'"):
        _abstract_init(cnnjax.create_model("resnet20", shortcut="C"), (1, 32, 32, 3))


def _cifar_resnet_params(n: int, classes: int = 10) -> int:
    """He et al. Sec. 4.2 net with option A shortcuts, counted layer by layer."""
    total = 27 * 16 + _bn(16)  # conv1
    c_in = 16
    for width in (16, 32, 64):
        for i in range(n):
            first_in = c_in if i == 0 else width
            total += 9 * first_in * width + 9 * width * width + 2 * _bn(width)
        c_in = width
    return total + 64 * classes + classes


def test_cifar_resnet_counts_follow_the_closed_form():
    # The formula reproduces the paper-table counts (model_zoo.md §7.2) ...
    assert _cifar_resnet_params(3) == 269_722
    assert _cifar_resnet_params(18) == 1_727_962
    assert _cifar_resnet_params(200) == 19_421_274
    # ... and the model agrees with it for depths not in the table too.
    from cnnjax.models.resnet import CifarResNet

    for n in (1, 2, 4):
        params = _abstract_init(CifarResNet(n, num_classes=100), (1, 32, 32, 3))["params"]
        assert _count(params) == _cifar_resnet_params(n, classes=100)
    assert cifar_blocks_per_stage(110) == 18
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_blocks_per_stage(21)


def test_resnet50_on_16x16_runs_down_to_1x1_maps():
    # Every ResNet window is padded, so tiny inputs fit (as in torchvision): 16 -> 8 -> 4 -> 4
    # -> 2 -> 1 -> 1; the global pool then averages a single pixel.
    shapes = _intermediate_shapes(cnnjax.create_model("resnet50"), (1, 16, 16, 3))
    sides = [shapes[(f"layer{i}",)][1] for i in range(1, 5)]
    assert sides == [4, 2, 1, 1]
    assert shapes[("fc",)] == (1, 1000)


def test_cifar_resnet_forward_in_bf16_and_batch_stats_update():
    model = cnnjax.create_model("resnet20", dtype=jnp.bfloat16)
    x = jax.random.normal(KEY, (2, 32, 32, 3))
    variables = jax.jit(model.init)(KEY, x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    logits, updates = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
    )(variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.bfloat16
    assert np.isfinite(np.asarray(logits, np.float32)).all()
    # With momentum 0.9 the first update moves the stem's running mean to 0.1·(batch mean).
    old = variables["batch_stats"]["conv1"]["bn"]["mean"]
    new = updates["batch_stats"]["conv1"]["bn"]["mean"]
    np.testing.assert_array_equal(old, 0.0)
    assert np.abs(np.asarray(new)).max() > 0


# --- DenseNet ---------------------------------------------------------------------------------


def _dense_channels(stem: int, blocks: tuple[int, ...], k: int) -> list[int]:
    """Channel count after the stem, each block and each transition (θ = 0.5)."""
    channels, c = [stem], stem
    for i, n in enumerate(blocks):
        c += n * k
        channels.append(c)
        if i < len(blocks) - 1:
            c //= 2
            channels.append(c)
    return channels


@pytest.mark.parametrize(
    ("name", "stem", "blocks", "k", "side"),
    [
        ("densenet_bc_100", 24, (16, 16, 16), 12, 32),
        ("densenet121", 64, (6, 12, 24, 16), 32, 224),
    ],
)
def test_densenet_channel_progression(name, stem, blocks, k, side):
    expected = _dense_channels(stem, blocks, k)
    if name == "densenet_bc_100":
        assert expected == [24, 216, 108, 300, 150, 342]
    else:
        assert expected[-1] == 1024
    shapes = _intermediate_shapes(cnnjax.create_model(name), (1, side, side, 3))
    stages = ["conv1"]
    for i in range(len(blocks)):
        stages.append(f"denseblock{i + 1}")
        if i < len(blocks) - 1:
            stages.append(f"transition{i + 1}")
    stem_key = ("pool1",) if name == "densenet121" else ("conv1",)
    got = [shapes[stem_key if s == "conv1" else (s,)][-1] for s in stages]
    assert got == expected


def test_dense_layer_parameter_count_and_concatenation():
    c, k = 20, 6
    layer = DenseLayer(k)
    variables = _abstract_init(layer, (1, 5, 5, c))
    # BN(C) + 1×1 C→4k + BN(4k) + 3×3 4k→k, no biases.
    assert _count(variables["params"]) == _bn(c) + c * 4 * k + _bn(4 * k) + 9 * 4 * k * k
    x = jax.random.normal(KEY, (1, 5, 5, c))
    out = layer.apply(layer.init(KEY, x), x)
    assert out.shape == (1, 5, 5, c + k)
    np.testing.assert_array_equal(out[..., :c], x)  # the input passes through unchanged
    plain = DenseLayer(k, bn_size=0)  # no bottleneck: BN(C) + 3×3 C→k
    assert _count(_abstract_init(plain, (1, 5, 5, c))["params"]) == _bn(c) + 9 * c * k


def test_transition_compresses_and_halves():
    t = Transition(compression=0.5)
    x = jax.random.normal(KEY, (1, 8, 8, 15))
    variables = t.init(KEY, x)
    assert t.apply(variables, x).shape == (1, 4, 4, 7)  # ⌊0.5 · 15⌋ = 7
    with pytest.raises(ValueError, match=r"compression θ must be in \(0, 1\]"):
        Transition(compression=1.5).init(KEY, x)


def test_dense_block_dropout_uses_the_rng_only_in_training():
    block = DenseBlock(2, growth_rate=4, dropout_rate=0.5)
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    variables = block.init(KEY, x)
    out_eval = block.apply(variables, x)
    assert out_eval.shape == (2, 6, 6, 3 + 2 * 4)
    np.testing.assert_array_equal(out_eval, block.apply(variables, x))

    def train(seed):
        rngs = {"dropout": jax.random.key(seed)}
        out, _ = block.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
        return np.asarray(out)

    a, b = train(1), train(2)
    assert not np.array_equal(a[..., 3:], b[..., 3:])
    np.testing.assert_array_equal(a[..., :3], b[..., :3])  # the block input is never dropped
    # Inverted dropout with rate 0.5 zeroes about half of the new features and doubles the rest.
    new = a[..., 3:]
    assert 0.3 < np.mean(new == 0) < 0.75


def test_densenet_growth_rate_and_dropout_overrides():
    model = cnnjax.create_model("densenet_bc_100", growth_rate=6, dropout_rate=0.2)
    shapes = _intermediate_shapes(model, (1, 32, 32, 3))
    assert shapes[("conv1",)][-1] == 12  # stem follows 2k
    assert shapes[("denseblock3",)][-1] == _dense_channels(12, (16, 16, 16), 6)[-1]


def test_densenet_too_small_input_names_the_transition():
    # 16 -> 8 (conv1) -> 4 (pool1) -> 2 -> 1, and transition3's 2×2 pool does not fit 1×1.
    with pytest.raises(InputTooSmallError, match=r"layer 'transition3/pool'.*\(1 - 2"):
        _abstract_init(cnnjax.create_model("densenet121"), (1, 16, 16, 3))


def test_small_densenet_trains_with_dropout_and_updates_batch_stats():
    # (densenet_bc_100 itself runs forward+backward in tests/test_models.py.)
    from cnnjax.models.densenet import DenseNet

    model = DenseNet((2, 2), growth_rate=4, stem="cifar", dropout_rate=0.2, num_classes=3)
    x = jax.random.normal(KEY, (2, 8, 8, 3))
    variables = model.init(KEY, x)
    step = jax.jit(
        lambda v, seed: model.apply(
            v, x, train=True, rngs={"dropout": jax.random.key(seed)}, mutable=["batch_stats"]
        )
    )
    (a, stats), (b, _) = step(variables, 1), step(variables, 2)
    assert a.shape == (2, 3) and not np.allclose(a, b)  # different dropout masks
    assert jax.tree.structure(stats["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    moved = stats["batch_stats"]["final_norm"]["mean"]
    assert np.abs(np.asarray(moved)).max() > 0  # running mean left its zero init
    np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))


def test_densenet_rejects_an_unknown_stem():
    from cnnjax.models.densenet import DenseNet

    with pytest.raises(ValueError, match="unknown DenseNet stem 'mnist'"):
        _abstract_init(DenseNet((2,), stem="mnist"), (1, 32, 32, 3))


# --- grouped and dilated ConvBNAct ------------------------------------------------------------


def test_grouped_conv_kernel_shape_and_equivalence_to_per_group_convs():
    unit = ConvBNAct(8, 3, padding=1, groups=4, norm=False, act=None)
    x = jax.random.normal(KEY, (1, 6, 6, 12))
    variables = unit.init(KEY, x)
    kernel = variables["params"]["conv"]["kernel"]
    assert kernel.shape == (3, 3, 12 // 4, 8)  # each output sees only its group's 3 inputs
    assert _count(variables["params"]) == 3 * 3 * 3 * 8 + 8
    out = unit.apply(variables, x)
    # Independently: group g maps input channels 3g..3g+2 to output channels 2g, 2g+1.
    pieces = [
        jax.lax.conv_general_dilated(
            x[..., 3 * g : 3 * g + 3], kernel[..., 2 * g : 2 * g + 2], (1, 1), [(1, 1), (1, 1)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        for g in range(4)
    ]
    expected = jnp.concatenate(pieces, axis=-1) + variables["params"]["conv"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_grouped_conv_rejects_channels_the_groups_do_not_divide():
    with pytest.raises(ValueError, match="groups=4 must divide both the 6 input"):
        ConvBNAct(8, 3, groups=4).init(KEY, jnp.zeros((1, 5, 5, 6)))


def test_dilated_conv_output_size_and_equivalence_to_a_spread_kernel():
    unit = ConvBNAct(2, 3, dilation=2, norm=False, act=None, use_bias=False)
    x = jax.random.normal(KEY, (1, 9, 9, 3))
    variables = unit.init(KEY, x)
    out = unit.apply(variables, x)
    assert out.shape == (1, 5, 5, 2)  # 9 - 2·(3 - 1) = 5
    kernel = np.asarray(variables["params"]["conv"]["kernel"])
    spread = np.zeros((5, 5, 3, 2), np.float32)
    spread[::2, ::2] = kernel  # a 3×3 kernel dilated by 2 is a 5×5 with holes
    plain = ConvBNAct(2, 5, norm=False, act=None, use_bias=False)
    expected = plain.apply({"params": {"conv": {"kernel": spread}}}, x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputTooSmallError, match="7-wide window"):
        ConvBNAct(2, 3, dilation=3).init(KEY, jnp.zeros((1, 6, 6, 3)))


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "input_shape", "classes"),
    [
        ("googlenet", (224, 224, 3), 1000),
        ("googlenet_bn", (224, 224, 3), 1000),
        ("resnet152", (224, 224, 3), 1000),
        ("resnet1202", (32, 32, 3), 10),
        ("densenet264", (224, 224, 3), 1000),
        ("densenet_bc_100", (32, 32, 3), 10),
    ],
)
def test_registry_entries(name, input_shape, classes):
    spec = cnnjax.model_spec(name)
    assert spec.input_shape == input_shape and spec.num_classes == classes and spec.paper

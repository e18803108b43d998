"""Scanned ResNet stages and rematerialisation: the same network as the unrolled one.

The unrolled form (`scan=False`, every block its own module) is the reference: a scanned model
given the same weights (stacked with `stack_blocks`) must give the same logits, batch
statistics and gradients, and every remat policy must change nothing but memory and time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import cnnjax
from cnnjax import data as cdata
from cnnjax.layers.residual import (
    MIN_SCANNED_REPEATS,
    REMAT_POLICIES,
    has_stacked_blocks,
    in_layout_of,
    stack_blocks,
    unstack_blocks,
)
from cnnjax.models.densenet import DenseNet
from cnnjax.train.checkpoints import RunCheckpoints, load, save_weights
from cnnjax.train.config import TrainConfig
from cnnjax.train.logger import read_metrics
from cnnjax.train.optim import make_optimizer
from cnnjax.train.runner import train_and_evaluate
from cnnjax.train.step import Steps, make_mesh
from cnnjax.train.validation import ConfigError, validate_config

KEY = jax.random.key(0)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _loss_and_grads(model, variables, x):
    """Sum of squared logits in training mode: (loss, logits, new batch_stats, grads)."""

    def loss(params):
        logits, updates = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2), (logits, updates["batch_stats"])

    (value, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"]
    )
    return value, logits, stats, grads


def _assert_trees_close(a, b, rtol=1e-4):
    flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        scale = float(jnp.abs(flat_b[path]).max()) + 1e-6
        err = float(jnp.abs(flat_a[path] - flat_b[path]).max())
        assert err <= rtol * scale, (path, err, scale)


@pytest.mark.parametrize(
    "name, shape", [("resnet32", (2, 32, 32, 3)), ("resnet34", (2, 48, 48, 3))]
)
def test_scanned_and_unrolled_compute_the_same_logits_stats_and_gradients(name, shape):
    unrolled = cnnjax.create_model(name, scan=False)
    scanned = cnnjax.create_model(name, scan=True)
    x = jax.random.normal(jax.random.key(1), shape)
    per_block = unrolled.init(KEY, x)
    stacked = stack_blocks(per_block)
    assert has_stacked_blocks(stacked) and not has_stacked_blocks(per_block)
    loss_u, logits_u, stats_u, grads_u = _loss_and_grads(unrolled, per_block, x)
    loss_s, logits_s, stats_s, grads_s = _loss_and_grads(scanned, stacked, x)
    np.testing.assert_allclose(logits_s, logits_u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss_s, loss_u, rtol=1e-5)
    _assert_trees_close(unstack_blocks(stats_s), stats_u)
    _assert_trees_close(unstack_blocks(grads_s), grads_u)


@pytest.mark.parametrize("name", ["resnet56", "resnet152"])
def test_scanned_models_hold_one_stacked_block_per_stage_and_the_same_counts(name):
    spec = cnnjax.model_spec(name)
    x = jnp.zeros((1, *spec.input_shape))

    def shapes(model):
        return jax.eval_shape(lambda: model.init(KEY, x))

    scanned = shapes(cnnjax.create_model(name, scan=True))
    unrolled = shapes(cnnjax.create_model(name, scan=False))
    for collection in ("params", "batch_stats"):
        assert _count(scanned[collection]) == _count(unrolled[collection])
    for stage, blocks in unrolled["params"].items():
        if stage.startswith("layer"):  # stages of 3 blocks stay unrolled (2 repeats)
            long = len(blocks) - 1 >= MIN_SCANNED_REPEATS
            expected = {"block1", "blocks"} if long else set(blocks)
            assert set(scanned["params"][stage]) == expected
    n = len([k for k in unrolled["params"]["layer3"] if k.startswith("block")])
    kernel = scanned["params"]["layer3"]["blocks"]["conv1"]["conv"]["kernel"]
    assert kernel.shape[0] == n - 1
    # The converters map one layout onto the other exactly, abstract shapes included.
    assert jax.tree.structure(unstack_blocks(scanned)) == jax.tree.structure(unrolled)
    assert jax.tree.structure(stack_blocks(unrolled)) == jax.tree.structure(scanned)


def test_stack_then_unstack_is_the_identity_on_values():
    model = cnnjax.create_model("resnet32", scan=False)
    variables = model.init(KEY, jnp.zeros((1, 32, 32, 3)))
    assert has_stacked_blocks(stack_blocks(variables))
    back = unstack_blocks(stack_blocks(variables))
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    # Models without scanned stages are left alone either way.
    lenet = cnnjax.create_model("lenet5")
    other = lenet.init(KEY, jnp.zeros((1, 32, 32, 1)))
    assert jax.tree.structure(in_layout_of(lenet, other)) == jax.tree.structure(other)


def _small_densenet(**overrides):
    return DenseNet((3, 2), growth_rate=4, stem="cifar", num_classes=10, **overrides)


def _resnet32(**overrides):
    return cnnjax.create_model("resnet32", scan=True, **overrides)


@pytest.mark.parametrize("build", [_resnet32, _small_densenet], ids=["resnet32", "densenet"])
@pytest.mark.parametrize("policy", [p for p in REMAT_POLICIES if p != "none"])
def test_remat_policies_change_neither_logits_nor_gradients(policy, build):
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    plain = build()
    variables = plain.init(KEY, x)
    _, logits, stats, grads = _loss_and_grads(plain, variables, x)
    rematted = build(remat=policy)
    assert jax.tree.structure(rematted.init(KEY, x)) == jax.tree.structure(variables)
    _, logits_r, stats_r, grads_r = _loss_and_grads(rematted, variables, x)
    np.testing.assert_allclose(logits_r, logits, rtol=1e-5, atol=1e-6)
    _assert_trees_close(stats_r, stats)
    _assert_trees_close(grads_r, grads)


def test_unknown_remat_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="--remat=everything is not a policy"):
        cnnjax.create_model("resnet20", remat="everything").init(KEY, jnp.zeros((1, 32, 32, 3)))


def test_features_of_a_scanned_model_name_every_block():
    scanned = cnnjax.create_model("resnet32", scan=True)
    unrolled = cnnjax.create_model("resnet32", scan=False)
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    per_block = unrolled.init(KEY, x)
    names = ["layer3/block2", "layer2/block3/conv2", "layer1"]
    ours = cnnjax.features(scanned, stack_blocks(per_block), x, names)
    reference = cnnjax.features(unrolled, per_block, x, names)
    for name in names:
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, atol=1e-6)
    assert "layer3/block3/conv1" in cnnjax.feature_names(scanned, (32, 32, 3))


def test_intermediates_of_scanned_blocks_come_back_stacked_in_block_order():
    # `capture_intermediates` (and `sow`) inside a scanned stage: one entry per block, stacked.
    scanned = cnnjax.create_model("resnet32", scan=True)
    unrolled = cnnjax.create_model("resnet32", scan=False)
    x = jax.random.normal(jax.random.key(5), (2, 32, 32, 3))
    per_block = unrolled.init(KEY, x)
    _, ours = scanned.apply(stack_blocks(per_block), x, capture_intermediates=True)
    _, reference = unrolled.apply(per_block, x, capture_intermediates=True)
    # The block's output, then the scan step's (output, None) carry: the same arrays.
    stacked, (carried, _) = ours["intermediates"]["layer2"]["blocks"]["__call__"]
    np.testing.assert_array_equal(stacked, carried)
    assert stacked.shape[0] == 4  # blocks 2 to 5 of the stage's 5
    for i in range(4):
        (block,) = reference["intermediates"]["layer2"][f"block{i + 2}"]["__call__"]
        np.testing.assert_allclose(stacked[i], block, rtol=1e-5, atol=1e-6)


def _cifar_config(workdir, **changes) -> TrainConfig:
    return TrainConfig(
        model="resnet32", dataset="fake", num_classes=10, workdir=str(workdir), **changes
    )


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
@pytest.mark.parametrize("scan", [True, False], ids=["scanned-run", "noscan-run"])
def test_a_checkpoint_in_either_layout_loads_in_the_layout_of_the_runs_model(tmp_path, scan):
    # load() gives the variables in the layout of the model the run's config builds.
    scanned = cnnjax.create_model("resnet32", scan=True)
    x = jax.random.normal(jax.random.key(4), (2, 32, 32, 3))
    stacked = scanned.init(KEY, x)
    for layout, saved in (("stacked", stacked), ("per-block", unstack_blocks(stacked))):
        workdir = tmp_path / layout
        save_weights(workdir, saved, _cifar_config(workdir, scan=scan))
        model, variables, _ = load(workdir)
        assert model.scan == scan and has_stacked_blocks(variables) == scan
        np.testing.assert_allclose(
            model.apply(variables, x), scanned.apply(stacked, x), rtol=1e-5, atol=1e-6
        )


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
@pytest.mark.parametrize("saved_scan", [False, True], ids=["per-block-saved", "stacked-saved"])
def test_a_checkpoint_resumes_into_the_other_layout_with_its_optimizer_state(tmp_path, saved_scan):
    # Checkpoints from before scanning (or --noscan) resume scanned, and the other way round.
    config = _cifar_config(tmp_path, momentum=0.9)
    optimizer = make_optimizer(config, 10)
    x = np.zeros((2, 32, 32, 3), np.float32)
    old = Steps(cnnjax.create_model("resnet32", scan=saved_scan), optimizer, config, make_mesh())
    state = old.init(x)
    state = state.replace(
        params=jax.tree.map(lambda a: a + 0.5, state.params),
        opt_state=jax.tree.map(  # the momentum buffers, stacked alike
            lambda a: a + 0.25 if jnp.issubdtype(a.dtype, jnp.floating) else a, state.opt_state
        ),
    )
    loader = cdata.make_loader("fake", "train", batch_size=2, train=True, image_size=32)
    next(loader)
    checkpoints = RunCheckpoints(tmp_path, keep=2)
    checkpoints.save(7, state, loader, config)
    checkpoints.close()
    new = Steps(
        cnnjax.create_model("resnet32", scan=not saved_scan), optimizer, config, make_mesh()
    )
    template = new.init(x)
    resumed = RunCheckpoints(tmp_path, keep=2).restore_latest(template)
    assert resumed.step == 7
    assert jax.tree.structure(resumed.state) == jax.tree.structure(template)
    for a, b in zip(
        jax.tree.leaves(unstack_blocks(resumed.state)),
        jax.tree.leaves(unstack_blocks(state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_a_checkpoint_with_every_stage_stacked_resumes_and_loads(tmp_path):
    # Scanned checkpoints from before 3-block stages were unrolled stack those stages too
    # (ResNet-34's layer1 and layer4): they resume and load into today's layout.
    config = TrainConfig(model="resnet34", dataset="fake", num_classes=10, momentum=0.9)
    config = config.replace(workdir=str(tmp_path))
    x = np.zeros((2, 32, 32, 3), np.float32)
    steps = Steps(cnnjax.create_model("resnet34", num_classes=10), make_optimizer(config, 10),
                  config, make_mesh())  # fmt: skip
    template = steps.init(x)
    state = template.replace(params=jax.tree.map(lambda a: a + 0.5, template.params))
    old = stack_blocks(unstack_blocks(state), min_repeats=1)
    assert set(old.params["layer1"]) == {"block1", "blocks"}
    assert set(state.params["layer1"]) == {"block1", "block2", "block3"}
    loader = cdata.make_loader("fake", "train", batch_size=2, train=True, image_size=32)
    next(loader)
    checkpoints = RunCheckpoints(tmp_path, keep=2)
    checkpoints.save(3, old, loader, config)
    checkpoints.close()
    resumed = RunCheckpoints(tmp_path, keep=2).restore_latest(template)
    assert jax.tree.structure(resumed.state) == jax.tree.structure(template)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    model, variables, _ = load(tmp_path)
    assert jax.tree.structure(variables["params"]) == jax.tree.structure(state.params)
    for a, b in zip(
        jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_a_noscan_run_resumed_scanned_continues_the_same_training(tmp_path):
    # The runner, checkpointing every 2 steps with an evaluation in between: an unrolled run
    # stopped at step 4 and resumed scanned (and back) follows the uninterrupted unrolled run.
    def run(workdir, steps, scan):
        config = TrainConfig(
            model="resnet32",
            dataset="fake",
            num_classes=10,
            image_size=16,  # the same program structure as 32², a quarter of the work
            batch_size=8,
            lr=0.05,
            momentum=0.9,
            max_steps=steps,
            checkpoint_every_steps=2,
            eval_every_epochs=4 / 1250,  # every 4 steps: 10,000 fake examples / 8
            log_every_steps=1,
            scan=scan,
            workdir=str(workdir),
        )
        train_and_evaluate(config, allow_config_change=False)
        _, variables, _ = load(workdir)
        return unstack_blocks(variables)

    straight = run(tmp_path / "straight", 8, scan=False)
    run(tmp_path / "switched", 4, scan=False)
    run(tmp_path / "switched", 6, scan=True)
    switched = run(tmp_path / "switched", 8, scan=False)
    events = read_metrics(tmp_path / "switched" / "metrics.jsonl")
    assert sorted({e["step"] for e in events if e["split"] == "train"}) == list(range(1, 9))
    for a, b in zip(jax.tree.leaves(switched), jax.tree.leaves(straight), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_remat_flag_errors_name_the_flag_and_the_fix():
    with pytest.raises(ConfigError, match="--remat=all is not valid: remat must be one of"):
        validate_config(TrainConfig(model="resnet20", dataset="fake", remat="all"))
    with pytest.raises(ConfigError, match="--remat=blocks: lenet5 .*; use --remat=none"):
        validate_config(TrainConfig(model="lenet5", dataset="fake", remat="blocks"))
    validate_config(TrainConfig(model="resnet20", dataset="fake", remat="convs"))


@pytest.mark.slow
def test_resnet1202_trains_a_few_steps_on_tiny_data():
    # He et al.'s 1,202-layer CIFAR net, as experiments.cifar10 --model=resnet1202 builds it.
    config = TrainConfig(model="resnet1202", dataset="fake", batch_size=4, lr=0.01, momentum=0.9)
    model = cnnjax.create_model("resnet1202")
    steps = Steps(model, make_optimizer(config, 10), config, make_mesh())
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(4, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, 4).astype(np.int32),
    }
    state = steps.init(batch["image"])
    assert _count(state.params) == 19_421_274  # model_zoo.md §7.2
    before = np.asarray(state.params["layer3"]["blocks"]["conv2"]["conv"]["kernel"])
    losses = []
    for _ in range(3):
        state, metrics = steps.train(state, steps.to_global(batch))
        losses.append(float(metrics["loss"]))
    after = np.asarray(state.params["layer3"]["blocks"]["conv2"]["conv"]["kernel"])
    assert all(np.isfinite(losses))
    assert not np.array_equal(before, after)


@pytest.mark.parametrize(
    "kernel, padding, strides",
    [
        ((3, 3), "SAME", (1, 1)),
        ((1, 1), "VALID", (1, 1)),
        ((3, 3), ((0, 2), (1, 0)), (1, 1)),  # asymmetric explicit padding
        ((3, 3), ((1, 1), (1, 1)), (2, 2)),  # strided: handed to lax as it is
    ],
)
def test_conv_plain_backward_gives_autodiffs_gradients(kernel, padding, strides):
    from jax import lax

    from cnnjax.layers.basic import conv_plain_backward

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 9, 8, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*kernel, 5, 4)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding, dimension_numbers=dn)))

    ours = jax.jit(jax.grad(loss(conv_plain_backward), argnums=(0, 1)))(x, w)
    reference = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    value = conv_plain_backward(x, w, strides, padding, dimension_numbers=dn)
    np.testing.assert_array_equal(
        value, lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn)
    )

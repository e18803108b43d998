"""The sharded train/eval steps: learning, 8-device == 1-device, masked and 10-crop evaluation."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax.train.config import TrainConfig
from cnnjax.train.optim import make_optimizer
from cnnjax.train.step import Steps, check_batch_divides, init_state, make_mesh

TRAJECTORY = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import cnnjax
    from cnnjax.train.config import TrainConfig
    from cnnjax.train.optim import make_optimizer
    from cnnjax.train.step import Steps, make_mesh
    config = TrainConfig(model="resnet20", lr=0.01, momentum=0.9, weight_decay=1e-4, batch_size=16)
    model = cnnjax.create_model("resnet20", num_classes=10)
    steps = Steps(model, make_optimizer(config, 10), config, make_mesh())
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 16, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=(5, 16)).astype(np.int32)
    state = steps.init(images[0])
    losses = []
    for i in range(5):
        state, m = steps.train(state, steps.to_global({"image": images[i], "label": labels[i]}))
        losses.append(float(m["loss"]))
    print(json.dumps({"devices": len(steps.mesh.devices.flat), "losses": losses}))
    """
)


def _trajectory(devices: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run(
        [sys.executable, "-c", TRAJECTORY], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_follow_the_one_device_trajectory():
    one, eight = _trajectory(1), _trajectory(8)
    assert (one["devices"], eight["devices"]) == (1, 8)
    # Global-batch BN and an all-reduced gradient make the runs the same up to float reordering
    # (per-device BN over 2 examples, or a wrong gradient average, would differ by >1e-2 at once).
    # Reordering differences are ~1e-6 after one update and grow slowly with the steps.
    np.testing.assert_allclose(eight["losses"][:2], one["losses"][:2], rtol=2e-5)
    np.testing.assert_allclose(eight["losses"], one["losses"], rtol=2e-3)
    assert one["losses"][-1] != one["losses"][0]


def _lenet_steps(config: TrainConfig) -> Steps:
    model = cnnjax.create_model("lenet5")
    return Steps(model, make_optimizer(config, 100), config, make_mesh())


def test_lenet_learns_a_learnable_problem():
    config = TrainConfig(lr=0.05, momentum=0.9, batch_size=32)
    steps = _lenet_steps(config)
    rng = np.random.default_rng(0)
    prototypes = rng.normal(size=(10, 32, 32, 1)).astype(np.float32)
    state = steps.init(np.zeros((32, 32, 32, 1), np.float32))
    losses = []
    for _ in range(40):
        labels = rng.integers(0, 10, 32)
        images = prototypes[labels] + 0.5 * rng.normal(size=(32, 32, 32, 1)).astype(np.float32)
        state, m = steps.train(
            state, steps.to_global({"image": images, "label": labels.astype(np.int32)})
        )
        losses.append(float(m["loss"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert int(state.step) == 40
    assert float(m["lr"]) == pytest.approx(0.05)


def test_the_cheaply_compiled_init_draws_the_same_bits():
    # Steps.init compiles at LLVM level 1 (INIT_COMPILER_OPTIONS); level 0 would move ~4% of
    # LeNet-5's weights by an ulp, which this comparison with a default compile catches.
    config = TrainConfig(seed=3)
    model, optimizer = cnnjax.create_model("lenet5"), make_optimizer(config, 100)
    example = np.zeros((2, 32, 32, 1), np.float32)
    state = Steps(model, optimizer, config, make_mesh()).init(example)
    init = functools.partial(init_state, model, optimizer, seed=3)
    reference = jax.jit(init)(jnp.asarray(example))
    assert jax.tree.structure(state) == jax.tree.structure(reference)
    for ours, theirs in zip(jax.tree.leaves(state), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_eval_sums_only_masked_examples_and_averages_crops():
    config = TrainConfig()
    steps = _lenet_steps(config)
    state = steps.init(np.zeros((4, 32, 32, 1), np.float32))
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 3, 32, 32, 1)).astype(np.float32)  # 3 crops per example
    labels = np.array([1, 2, 3, 4], np.int32)
    mask = np.array([1, 1, 1, 0], bool)
    sums = steps.eval(state, steps.to_global({"image": images, "label": labels, "mask": mask}))
    logits = np.asarray(
        cnnjax.create_model("lenet5").apply(state.variables(), images.reshape(12, 32, 32, 1))
    )
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).reshape(4, 3, 10).mean(1)
    hits = (probs.argmax(-1) == labels)[:3].sum()
    nll = -np.log(probs[np.arange(3), labels[:3]]).sum()
    top5 = sum(labels[i] in np.argsort(-probs[i])[:5] for i in range(3))
    assert float(sums["count"]) == 3
    assert float(sums["top1_sum"]) == hits and float(sums["top5_sum"]) == top5
    assert float(sums["loss_sum"]) == pytest.approx(nll, rel=1e-4)


def test_batch_that_does_not_divide_names_valid_sizes():
    with pytest.raises(
        ValueError,
        match=r"batch size 100 does not divide over 8 devices; use --batch_size=96 or 104",
    ):
        check_batch_divides(100, 8)
    check_batch_divides(96, 8)


def test_a_stop_between_evaluation_batches_ends_the_evaluation_there():
    # A preemption notice during a long evaluation is acted on at the next batch, not at its end.
    from cnnjax import data as cdata
    from cnnjax.train import runner

    config = TrainConfig(model="lenet5", dataset="fake", num_classes=10, batch_size=32)
    steps = Steps(
        cnnjax.create_model("lenet5", num_classes=10),
        make_optimizer(config, 10),
        config,
        make_mesh(),
    )
    state = steps.init(np.zeros((64, 32, 32, 1), np.float32))
    asked = []

    def stop_after_three() -> bool:
        asked.append(True)
        return len(asked) > 3

    assert runner.evaluate(steps, state, config, 32, 64, stop=stop_after_three) is None
    assert len(asked) == 4  # checked before each batch; 3 of the 32 batches were scored
    full = runner.evaluate(steps, state, config, 32, 64)
    assert full["examples"] == cdata.num_examples("fake", "test", fake=runner.fake_spec(config))

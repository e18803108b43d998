"""Schedules, weight decay and recipes against the papers' numbers and PyTorch's SGD semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train.config import TrainConfig
from cnnjax.train.optim import cross_entropy, decay_mask, make_optimizer, make_schedule
from cnnjax.train.recipes import RECIPES, build_config


def _lrs(config: TrainConfig, steps_per_epoch: int, steps) -> list[float]:
    schedule = make_schedule(config, steps_per_epoch)
    return [float(schedule(s)) for s in steps]


def test_step_decay_at_30_60_80_epochs():
    config = TrainConfig(lr=0.1, lr_schedule="step", lr_decay_epochs=(30, 60, 80))
    got = _lrs(config, 100, [0, 2999, 3000, 5999, 6000, 7999, 8000])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001], rtol=1e-6)


def test_resnet110_cifar_warmup_then_iteration_boundaries():
    config = build_config(
        TrainConfig(model="resnet110", dataset="cifar10"), {}, "resnet_cifar_paper"
    )
    got = _lrs(config, 391, [0, 399, 400, 31_999, 32_000, 47_999, 48_000, 63_999])
    np.testing.assert_allclose(got, [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    assert config.max_steps == 64_000


def test_googlenet_exponential_minus_4_percent_every_8_epochs():
    config = build_config(
        TrainConfig(dataset="imagenet2012", model="googlenet"), {}, "googlenet_paper"
    )
    spe = 10
    got = _lrs(config, spe, [0, 79, 80, 159, 160, 800])
    want = [0.01, 0.01, 0.01 * 0.96, 0.01 * 0.96, 0.01 * 0.96**2, 0.01 * 0.96**10]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_linear_warmup_then_cosine():
    config = TrainConfig(lr=0.4, lr_schedule="cosine", warmup_epochs=1, epochs=5)
    got = _lrs(config, 10, [0, 5, 10, 30, 50])
    # warm-up 0 → 0.4 over 10 steps; then half a cosine over the remaining 40 steps.
    want = [0.0, 0.2, 0.4, 0.4 * 0.5 * (1 + np.cos(np.pi * 20 / 40)), 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_plateau_divides_by_ten_after_patience_evaluations():
    config = TrainConfig(lr=0.01, lr_schedule="plateau", plateau_patience=2)
    opt = make_optimizer(config, 100)
    state = opt.plateau.init({"w": jnp.zeros(())})
    scales = []
    for val_error in [0.6, 0.5, 0.5, 0.5, 0.5, 0.4, 0.45, 0.45, 0.45]:
        _, state = opt.plateau.update({"w": jnp.zeros(())}, state, value=jnp.asarray(val_error))
        scales.append(float(state.scale))
    # two evaluations without improvement → ×0.1; patience counts from the best value.
    np.testing.assert_allclose(scales, [1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_coupled_l2_matches_pytorch_sgd_on_kernels_only():
    params = {"conv": {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([0.5])}}
    grads = {"conv": {"kernel": jnp.array([0.1, 0.2]), "bias": jnp.array([0.3])}}
    config = TrainConfig(lr=0.1, momentum=0.9, weight_decay=0.01)
    tx = make_optimizer(config, 1).tx
    state = tx.init(params)
    # PyTorch SGD: d = g + wd·p (kernels only here); buf = μ·buf + d; p -= lr·buf.
    buf_k, buf_b = np.zeros(2), np.zeros(1)
    p_k, p_b = np.array([1.0, -2.0]), np.array([0.5])
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        buf_k = 0.9 * buf_k + (np.array([0.1, 0.2]) + 0.01 * p_k)
        buf_b = 0.9 * buf_b + np.array([0.3])
        p_k, p_b = p_k - 0.1 * buf_k, p_b - 0.1 * buf_b
    np.testing.assert_allclose(params["conv"]["kernel"], p_k, rtol=1e-6)
    np.testing.assert_allclose(params["conv"]["bias"], p_b, rtol=1e-6)


def test_decay_mask_and_decoupled_mode():
    params = {"bn": {"scale": jnp.ones(2)}, "fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    assert jax.tree.leaves(decay_mask(params)) == [False, False, True]
    assert all(jax.tree.leaves(decay_mask(params, include_all=True)))
    config = TrainConfig(lr=0.1, momentum=0.0, weight_decay=0.5, decay_mode="decoupled")
    tx = make_optimizer(config, 1).tx
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates["fc"]["kernel"], -0.1 * 0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["fc"]["bias"], 0.0)


def test_label_smoothing_cross_entropy():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    logp = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    np.testing.assert_allclose(
        cross_entropy(logits, jnp.array([0]), 0.1), [-(target * logp).sum()], rtol=1e-6
    )


def test_recipes_match_the_papers():
    def cfg(recipe, dataset="imagenet2012", model="resnet50"):
        return build_config(TrainConfig(dataset=dataset, model=model), {}, recipe)

    alex = cfg("alexnet_paper", model="alexnet")
    assert (alex.batch_size, alex.lr, alex.momentum, alex.weight_decay, alex.lr_schedule) == (
        128,
        0.01,
        0.9,
        5e-4,
        "plateau",
    )
    vgg = cfg("vgg_paper", model="vgg16")
    assert (vgg.batch_size, vgg.lr, vgg.weight_decay, vgg.lr_schedule, vgg.epochs) == (
        256,
        0.01,
        5e-4,
        "plateau",
        74,
    )
    res = cfg("resnet_paper")
    assert (res.batch_size, res.lr, res.weight_decay, res.lr_decay_epochs, res.epochs) == (
        256,
        0.1,
        1e-4,
        (30, 60),
        90,
    )
    cifar = cfg("resnet_cifar_paper", "cifar10", "resnet56")
    assert (
        cifar.batch_size,
        cifar.lr,
        cifar.lr_decay_steps,
        cifar.max_steps,
        cifar.warmup_steps,
    ) == (128, 0.1, (32_000, 48_000), 64_000, 0)
    dense_in = cfg("densenet_paper", model="densenet121")
    assert (
        dense_in.nesterov,
        dense_in.lr,
        dense_in.weight_decay,
        dense_in.lr_decay_epochs,
        dense_in.epochs,
        dense_in.batch_size,
    ) == (True, 0.1, 1e-4, (30, 60), 90, 256)
    dense_c = cfg("densenet_paper", "cifar10", "densenet_bc_100")
    assert (dense_c.batch_size, dense_c.epochs, dense_c.lr_decay_epochs) == (64, 300, (150, 225))
    assert set(RECIPES) >= {
        "lenet",
        "alexnet_paper",
        "vgg_paper",
        "googlenet_paper",
        "resnet_paper",
        "resnet_cifar_paper",
        "densenet_paper",
    }


def test_explicit_values_override_the_recipe_and_bad_names_fail():
    config = build_config(TrainConfig(), {"lr": 0.3, "batch_size": 512}, "resnet_paper")
    assert (config.lr, config.batch_size, config.weight_decay) == (0.3, 512, 1e-4)
    with pytest.raises(ValueError, match="unknown recipe 'resnet'; choose one of lenet"):
        build_config(TrainConfig(), {}, "resnet")
    with pytest.raises(ValueError, match="unknown lr_schedule 'poly'"):
        make_schedule(TrainConfig(lr_schedule="poly"), 10)


def test_linear_lr_scaling_only_when_asked():
    assert _lrs(TrainConfig(lr=0.1, batch_size=1024), 1, [0]) == pytest.approx([0.1])
    scaled = TrainConfig(lr=0.1, batch_size=1024, lr_scaling="linear", base_batch_size=256)
    assert _lrs(scaled, 1, [0]) == pytest.approx([0.4])

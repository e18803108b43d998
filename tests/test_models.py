"""Registry-wide checks: every model's parameter and BN-statistic counts against the reference
tables (../shared/reference/model_zoo.md, from torchvision metadata and the papers), output
shapes, dtype handling, size errors, determinism and a real jitted forward+backward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax.layers import InputTooSmallError
from cnnjax.models import UnknownModelError

# name -> (params, BN running statistics (mean + var elements)); model_zoo.md §1, §7.2, §8, §9, §10.
REFERENCE_COUNTS = {
    "lenet5": (61_706, 0),
    "small_convnet": (104_202, 0),
    "alexnet": (62_378_344, 0),
    "alexnet_grouped": (60_965_224, 0),
    "alexnet_tv": (61_100_840, 0),  # torchvision's, "one weird trick" widths (model_zoo.md §3.1)
    "zfnet": (62_357_608, 0),
    "vgg11": (132_863_336, 0),
    "vgg13": (133_047_848, 0),
    "vgg16": (138_357_544, 0),
    "vgg19": (143_667_240, 0),
    "vgg11_bn": (132_868_840, 5_504),
    "vgg13_bn": (133_053_736, 5_888),
    "vgg16_bn": (138_365_992, 8_448),
    "vgg19_bn": (143_678_248, 11_008),
    "googlenet": (13_378_280, 0),
    "googlenet_bn": (13_004_888, 15_072),
    "resnet18": (11_689_512, 9_600),
    "resnet34": (21_797_672, 17_024),
    "resnet50": (25_557_032, 53_120),
    "resnet101": (44_549_160, 105_344),
    "resnet152": (60_192_808, 151_424),
    "resnet20": (269_722, 1_376),
    "resnet32": (464_154, 2_272),
    "resnet44": (658_586, 3_168),
    "resnet56": (853_018, 4_064),
    "resnet110": (1_727_962, 8_096),
    "resnet1202": (19_421_274, 89_632),
    "densenet121": (7_978_856, 83_648),
    "densenet169": (14_149_480, 158_400),
    "densenet201": (20_013_928, 229_056),
    "densenet161": (28_681_000, 219_936),  # k=48, as torchvision (model_zoo.md §1)
    "densenet264": (33_337_704, 398_528),
    "densenet_bc_100": (769_162, 23_988),
    "nin": (966_986, 0),
    "textcnn": (360_902, 0),  # excluding the embedding table (Kim 2014 reports it separately)
}
# Without auxiliary classifiers (model_zoo.md §6.1): paper 6,998,552; torchvision BN 6,624,904.
NO_AUX_COUNTS = {"googlenet": (6_998_552, 0), "googlenet_bn": (6_624_904, 14_560)}

# Models small enough to compile and run a forward+backward pass on 2 CPU cores, with the input
# side used (None: the registry default). DenseNet-121 shares its blocks with DenseNet-BC-100 and
# the deeper ImageNet nets repeat the blocks run here; they are checked abstractly above.
RUNNABLE = {
    "lenet5": None,
    "small_convnet": None,
    "alexnet": None,
    "alexnet_grouped": None,
    "zfnet": None,
    "vgg11": 32,
    "vgg11_bn": 32,
    "googlenet": None,
    "googlenet_bn": 64,
    "resnet18": 64,
    "resnet50": 64,
    "resnet20": None,
    "densenet_bc_100": None,
    "nin": None,
    "textcnn": None,
}


def _input(name: str, side: int | None = None, batch: int = 1) -> jax.ShapeDtypeStruct:
    spec = cnnjax.model_spec(name)
    shape = spec.input_shape
    if side is not None:
        shape = (side,) if len(shape) == 1 else (side, side, shape[-1])
    return jax.ShapeDtypeStruct((batch, *shape), spec.input_dtype)


def _abstract_variables(model, x: jax.ShapeDtypeStruct):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _trainable_params(name: str, params) -> dict:
    if name == "textcnn":  # the embedding table is reported separately
        return {k: v for k, v in params.items() if "embed" not in k}
    return params


def test_registry_lists_every_reference_model():
    assert set(cnnjax.list_models()) == set(REFERENCE_COUNTS)
    assert cnnjax.list_models("resnet1*") == [
        "resnet101",
        "resnet110",
        "resnet1202",
        "resnet152",
        "resnet18",
    ]


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_and_bn_counts_match_reference(name):
    model = cnnjax.create_model(name)
    variables = _abstract_variables(model, _input(name))
    params, stats = REFERENCE_COUNTS[name]
    assert _count(_trainable_params(name, variables["params"])) == params
    assert _count(variables.get("batch_stats", {})) == stats
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name", sorted(NO_AUX_COUNTS))
def test_googlenet_counts_without_aux_heads(name):
    model = cnnjax.create_model(name, aux_logits=False)
    variables = _abstract_variables(model, _input(name))
    params, stats = NO_AUX_COUNTS[name]
    assert _count(variables["params"]) == params
    assert _count(variables.get("batch_stats", {})) == stats


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_output_shape_and_bf16_compute(name):
    model = cnnjax.create_model(name, num_classes=7, dtype=jnp.bfloat16)
    x = _input(name, batch=2)
    variables = _abstract_variables(model, x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (2, 7)
    assert logits.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))


# ResNets pad every window (7x7/2 pad 3, pool 3/2 pad 1, 3x3 pad 1), so like torchvision's they
# accept any input of at least 1x1; every other model has a window that cannot fit a 2x2 image.
FULLY_PADDED = {name for name in REFERENCE_COUNTS if name.startswith("resnet")}
# Kim's text CNN pads h_max - 1 tokens on each side by default; unpadded, short sentences fail.
TOO_SMALL_OVERRIDES = {"textcnn": {"pad": False}}


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_too_small_input_names_the_layer(name):
    model = cnnjax.create_model(name, **TOO_SMALL_OVERRIDES.get(name, {}))
    tiny = _input(name, side=2)
    if name in FULLY_PADDED:
        variables = _abstract_variables(model, tiny)
        out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, tiny)
        assert out.shape == (1, cnnjax.model_spec(name).num_classes)
        return
    with pytest.raises(InputTooSmallError, match=r"layer '.+'.*too small.*\(\d+ - \d+"):
        _abstract_variables(model, tiny)


def test_unknown_model_lists_the_registry():
    with pytest.raises(
        UnknownModelError, match="did you mean .*resnet50.*registered models: .*vgg16"
    ):
        cnnjax.create_model("resnet5O")


def _loss(model, variables, x, labels, key):
    out, _ = model.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
    logits, aux = (out[0], out[1]) if isinstance(out, tuple) else (out, ())
    one_hot = jax.nn.one_hot(labels, logits.shape[-1])
    loss = -jnp.mean(jnp.sum(one_hot * jax.nn.log_softmax(logits.astype(jnp.float32)), -1))
    for extra in aux:
        loss += 0.3 * -jnp.mean(
            jnp.sum(one_hot * jax.nn.log_softmax(extra.astype(jnp.float32)), -1)
        )
    return loss


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_forward_backward_is_finite_and_deterministic(name, fast_compile):
    model = cnnjax.create_model(name, num_classes=5)
    x_spec = _input(name, RUNNABLE[name], batch=2)
    if x_spec.dtype == jnp.int32:
        x = jax.random.randint(jax.random.key(1), x_spec.shape, 1, 100)
    else:
        x = jax.random.normal(jax.random.key(1), x_spec.shape)
    init = jax.jit(model.init)
    variables = init(jax.random.key(0), x)
    again = init(jax.random.key(0), x)
    assert all(
        jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), variables, again))
    )
    labels = jnp.array([0, 3])
    grad_fn = jax.jit(
        jax.value_and_grad(
            lambda p: _loss(model, {**variables, "params": p}, x, labels, jax.random.key(2))
        )
    )
    loss, grads = grad_fn(variables["params"])
    loss2, _ = grad_fn(variables["params"])
    assert np.isfinite(float(loss)) and float(loss) == float(loss2)
    grad_norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(grad_norms))
    assert sum(n > 0 for n in grad_norms) > len(grad_norms) // 2  # gradients reach most layers
    predict = jax.jit(lambda v, x: model.apply(v, x, train=False))
    eval_out = predict(variables, x)
    assert eval_out.shape == (2, 5)
    np.testing.assert_array_equal(eval_out, predict(variables, x))

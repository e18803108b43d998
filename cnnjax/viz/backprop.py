"""Input gradients with modified ReLU backward rules: guided backprop and the deconvnet.

For a ReLU y = max(x, 0) with incoming gradient g = dL/dy, the backward pass returns

| method     | dL/dx                      | source                                   |
|------------|----------------------------|------------------------------------------|
| gradient   | g · [x > 0]                | ordinary backprop (Simonyan et al. 2014) |
| deconvnet  | g · [g > 0]                | Zeiler & Fergus 2014, Sec. 2.1           |
| guided     | g · [x > 0] · [g > 0]      | Springenberg et al. 2015, Sec. 3.4       |

everything else (convolutions, pooling through its argmax "switches", BN, dense layers) keeping
its ordinary gradient, which is how both papers define their backward passes.

How the rule reaches the ReLUs without touching the models: the models call `nn.relu` as a
plain function, or keep it as a field default (`ConvBNAct.act`) or in a table (LeNet's
`ACTIVATIONS`), so neither a flax method interceptor nor patching `nn.relu` catches them all.
Instead `with_relu_rule` traces the forward pass to a jaxpr and re-evaluates it, replacing
every ReLU, i.e. every `max(x, 0)` (what `jax.nn.relu` lowers to, as does
`jnp.maximum(x, 0)`), with a `jax.custom_vjp` function carrying the chosen rule; it descends
into `jit` and `custom_jvp` calls (`jax.nn.relu` is both). Limits: a ReLU written another way
(`jnp.where(x > 0, x, 0)`, `x * (x > 0)`) is not recognised; one inside `scan`, `cond`,
`remat` or another control-flow primitive raises an error rather than being silently missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxprs_in_params

METHODS = ("gradient", "guided", "deconvnet")


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward passes g only where both the input and g are positive."""
    return jnp.maximum(x, 0)


def _guided_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.maximum(x, 0), x


def _guided_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


@jax.custom_vjp
def deconvnet_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward is the ReLU of the incoming gradient, whatever the input was."""
    return jnp.maximum(x, 0)


def _deconvnet_fwd(x: jax.Array) -> tuple[jax.Array, None]:
    return jnp.maximum(x, 0), None


def _deconvnet_bwd(_: None, g: jax.Array) -> tuple[jax.Array]:
    return (jnp.maximum(g, jnp.zeros_like(g)),)


deconvnet_relu.defvjp(_deconvnet_fwd, _deconvnet_bwd)

RELU_RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "guided": guided_relu,
    "deconvnet": deconvnet_relu,
}


def _relu_operand(eqn: Any) -> Any | None:
    """For `max(x, 0)` / `max(0, x)` the operand x (a Var), else None."""
    if eqn.primitive.name != "max" or len(eqn.invars) != 2:
        return None
    for zero, other in (eqn.invars, eqn.invars[::-1]):
        is_zero = isinstance(zero, Literal) and np.ndim(zero.val) == 0 and float(zero.val) == 0
        if is_zero and not isinstance(other, Literal):
            return other
    return None


def _inlined_jaxpr(eqn: Any) -> ClosedJaxpr | None:
    """The body of a `jit` or `custom_jvp_call` equation, which is evaluated in place."""
    if eqn.primitive.name in ("jit", "pjit"):
        return eqn.params["jaxpr"]
    if eqn.primitive.name == "custom_jvp_call":
        return eqn.params["call_jaxpr"]
    return None


def _contains_relu(jaxpr: Jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if _relu_operand(eqn) is not None:
            return True
        if any(_contains_relu(inner) for inner in jaxprs_in_params(eqn.params)):
            return True
    return False


def _evaluate(jaxpr: Jaxpr, consts: list[Any], args: list[Any], relu: Callable) -> list[Any]:
    """`jax.core.eval_jaxpr`, with every ReLU replaced by `relu`."""
    env: dict[Any, Any] = {}

    def read(var: Any) -> Any:
        return var.val if isinstance(var, Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        operand = _relu_operand(eqn)
        inner = _inlined_jaxpr(eqn)
        invals = [read(v) for v in eqn.invars]
        if operand is not None:
            outs = [relu(read(operand))]
        elif inner is not None and _contains_relu(inner.jaxpr):
            outs = _evaluate(inner.jaxpr, inner.consts, invals, relu)
        else:
            if any(_contains_relu(j) for j in jaxprs_in_params(eqn.params)):
                raise ValueError(
                    f"a ReLU inside a {eqn.primitive.name!r} primitive cannot be given a "
                    "modified gradient; use method='gradient' for this model"
                )
            params = eqn.primitive.get_bind_params(eqn.params)
            ans = eqn.primitive.bind(*invals, **params)
            outs = ans if eqn.primitive.multiple_results else [ans]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def with_relu_rule(fun: Callable[..., Any], relu: Callable[[jax.Array], jax.Array]) -> Callable:
    """`fun` with every ReLU in its computation replaced by `relu` (see the module docstring).

    The forward values are unchanged when `relu` computes max(x, 0); only gradients differ.
    """

    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args), relu)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return rewritten


def input_gradient(
    model: Any,
    variables: Any,
    image: np.ndarray,
    method: str = "gradient",
    target: int | None = None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """d logit[target] / d image for one (H, W, C) image, with `method`'s ReLU rule.

    target: the class (default: the predicted one). Returns (gradient (H, W, C), target,
    logits).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    x = jnp.asarray(image, jnp.float32)[None]

    def logits_of(params: Any, batch: jax.Array) -> jax.Array:
        return model.apply(params, batch, train=False)

    logits = np.asarray(jax.jit(logits_of)(variables, x))[0]
    num_classes = logits.shape[-1]
    target = int(np.argmax(logits)) if target is None else int(target)
    if not 0 <= target < num_classes:
        raise ValueError(f"target class {target} is outside [0, {num_classes})")
    forward = logits_of if method == "gradient" else with_relu_rule(logits_of, RELU_RULES[method])
    # The weights are an argument, not a constant folded into the compiled program.
    grad = jax.jit(jax.grad(lambda v, batch: forward(v, batch)[0, target], argnums=1))(variables, x)
    return np.asarray(grad)[0], target, logits


def saliency_map(gradient: np.ndarray) -> np.ndarray:
    """(H, W, C) input gradient -> (H, W) map: max over channels of |gradient| (Simonyan 2014)."""
    return np.abs(np.asarray(gradient)).max(axis=-1)

"""Per-layer model tables (output shape, parameters, MACs, activation memory), as in lectures.

    python -m cnnjax.summary --model=alexnet [--input_size=227] [--format=text|markdown|csv|flax]
    python -m cnnjax.summary --model=resnet18 --layers [--depth=2]   # names for cnnjax.features

Shapes come from one abstract forward pass (`jax.eval_shape`, nothing is computed or allocated),
with a flax method interceptor recording every module call. MACs are counted the way
torchvision's `_ops` metadata counts them: multiply-accumulates of convolution and dense layers
only (BN, activations, pooling and bias adds are free). `--format=flax` prints flax's own
`Module.tabulate` table instead.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from cnnjax.layers.residual import unrolled
from cnnjax.models.registry import create_model, model_spec

MAC_NOTE = (
    "MACs: multiply-accumulates of conv and dense layers only, per example "
    "(torchvision's convention; BN, activations, pooling and bias adds not counted)."
)
_NO_NEW_MEMORY = ("Dropout",)  # identity at inference: its output is not a new activation


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One row of the table; counts are per example."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """The rows and the totals of a model summary."""

    model: str
    input_shape: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    total_batch_stats: int
    total_macs: int
    total_activations: int
    bytes_per_value: int

    @property
    def activation_bytes(self) -> int:
        return self.total_activations * self.bytes_per_value


@dataclasses.dataclass
class _Call:
    path: tuple[str, ...]
    kind: str
    output_shape: tuple[int, ...] = ()
    params: int = 0
    macs: int = 0
    activations: int = 0
    is_leaf: bool = True


def _size(tree: Any) -> int:
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))


def _first_array(tree: Any) -> Any:
    leaves = jax.tree.leaves(tree)
    return leaves[0] if leaves else None


def _record_calls(
    module: nn.Module, example: jax.ShapeDtypeStruct
) -> tuple[list[_Call], dict[str, Any]]:
    """Abstractly init and apply `module`; return every module call in order, and the variables."""
    calls: list[_Call] = []
    stack: list[_Call] = []

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name != "__call__" or mod.scope is None:
            return next_fun(*args, **kwargs)
        call = _Call(tuple(mod.scope.path), type(mod).__name__)
        if stack:
            stack[-1].is_leaf = False
        calls.append(call)
        stack.append(call)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            stack.pop()
        first = _first_array(out)
        if first is not None:
            batch = first.shape[0] if first.ndim else 1
            call.output_shape = tuple(first.shape[1:])
            call.activations = int(np.prod(first.shape, dtype=np.int64)) // max(batch, 1)
            kernel = mod.variables.get("params", {}).get("kernel")
            if isinstance(mod, nn.Conv | nn.Dense) and kernel is not None:
                positions = call.activations // first.shape[-1]
                call.macs = positions * int(np.prod(kernel.shape, dtype=np.int64))
        return out

    def run(x: jax.Array) -> dict[str, Any]:
        variables = module.init(jax.random.key(0), x)
        with nn.intercept_methods(interceptor):
            module.apply(variables, x, train=False)
        return variables

    variables = jax.eval_shape(run, example)
    # Own parameters of each leaf, from the variable tree (eval_shape leaves no tracers behind).
    params = variables.get("params", {})
    for call in calls:
        if call.is_leaf:
            node = params
            for key in call.path:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            call.params = _size(node)
    return calls, variables


def summarize(
    model: str | nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    dtype: Any = jnp.float32,
    depth: int | None = None,
    **overrides: Any,
) -> ModelSummary:
    """Summarise a registered model by name (or any linen module with `input_shape` given).

    `input_shape` is one example without the batch axis (NHWC); `depth` groups the rows at that
    depth of the module tree (None: every leaf layer).
    """
    if isinstance(model, str):
        spec = model_spec(model)
        name, input_dtype = model, spec.input_dtype
        shape = tuple(input_shape) if input_shape is not None else spec.input_shape
        module = create_model(model, dtype=dtype, **overrides)
    else:
        if input_shape is None:
            raise ValueError("summarize: give input_shape for a module that is not registered")
        name, input_dtype, shape, module = (
            type(model).__name__,
            jnp.float32,
            tuple(input_shape),
            model,
        )
    module, _ = unrolled(module)  # scanned stages: one row per block, as the unrolled net
    calls, variables = _record_calls(module, jax.ShapeDtypeStruct((1, *shape), input_dtype))

    leaves = [c for c in calls if c.is_leaf]
    input_row = LayerRow("input", "Input", shape, 0, 0, int(np.prod(shape, dtype=np.int64)))
    own = _own_param_rows(variables.get("params", {}), calls)
    rows = [input_row, *own] + [_row(c.path, c.kind, c.output_shape, [c]) for c in leaves]
    if depth is not None:
        rows = [input_row, *own] + _group(calls, leaves, depth)
    stats = variables.get("batch_stats", {})
    return ModelSummary(
        model=name,
        input_shape=shape,
        rows=rows,
        total_params=_size(variables.get("params", {})),
        total_batch_stats=_size(stats),
        total_macs=sum(c.macs for c in leaves),
        total_activations=input_row.activations + sum(_memory(c) for c in leaves),
        bytes_per_value=jnp.dtype(dtype).itemsize,
    )


def _own_param_rows(params: dict[str, Any], calls: list[_Call]) -> list[LayerRow]:
    """A row per parameter the model holds itself, outside its layers (textcnn's embedding)."""
    in_layers = {c.path[0] for c in calls if c.path}
    return [
        LayerRow(name, "Param", tuple(value.shape), _size(value), 0, 0)
        for name, value in params.items()
        if name not in in_layers and not isinstance(value, dict)
    ]


def _memory(call: _Call) -> int:
    return 0 if call.kind in _NO_NEW_MEMORY else call.activations


def _row(
    path: tuple[str, ...], kind: str, shape: tuple[int, ...], members: list[_Call]
) -> LayerRow:
    return LayerRow(
        name="/".join(path),
        kind=kind,
        output_shape=shape,
        params=sum(c.params for c in members),
        macs=sum(c.macs for c in members),
        activations=sum(_memory(c) for c in members),
    )


def _group(calls: list[_Call], leaves: list[_Call], depth: int) -> list[LayerRow]:
    """Rows for the modules at `depth` (and shallower leaves), summing their leaves."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    first_call = {}
    for c in calls:
        first_call.setdefault(c.path, c)
    groups: dict[tuple[str, ...], list[_Call]] = {}
    for leaf in leaves:
        groups.setdefault(leaf.path[:depth], []).append(leaf)
    rows = []
    for prefix, members in groups.items():
        head = first_call.get(prefix, members[-1])
        rows.append(_row(prefix, head.kind, head.output_shape, members))
    return rows


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _table(summary: ModelSummary) -> tuple[list[str], list[list[str]]]:
    header = ["layer", "type", "output shape", "params", "MACs", "activations", "memory"]
    body = [
        [
            r.name,
            r.kind,
            "×".join(map(str, r.output_shape)),
            _fmt_int(r.params),
            _fmt_int(r.macs),
            _fmt_int(r.activations),
            _fmt_bytes(r.activations * summary.bytes_per_value),
        ]
        for r in summary.rows
    ]
    body.append(
        [
            "total",
            "",
            "",
            _fmt_int(summary.total_params),
            _fmt_int(summary.total_macs),
            _fmt_int(summary.total_activations),
            _fmt_bytes(summary.activation_bytes),
        ]
    )
    return header, body


def format_summary(summary: ModelSummary, fmt: str = "text") -> str:
    """Render as 'text' (aligned columns), 'markdown' or 'csv'."""
    header, body = _table(summary)
    footer = [
        f"{summary.model}: input {'×'.join(map(str, summary.input_shape))}, "
        f"{summary.total_params:,} params, {summary.total_batch_stats:,} BN running statistics, "
        f"{summary.total_macs / 1e9:.4f} GMACs, forward activations "
        f"{_fmt_bytes(summary.activation_bytes)} per example.",
        MAC_NOTE,
    ]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for row in body:
            writer.writerow(
                [cell.replace(",", "") if i >= 3 else cell for i, cell in enumerate(row)]
            )
        return out.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 4) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + [""] + footer) + "\n"
    if fmt == "text":
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        return (
            "\n".join(
                [line(header), rule, *map(line, body[:-1]), rule, line(body[-1]), "", *footer]
            )
            + "\n"
        )
    raise ValueError(f"unknown format {fmt!r}; choose text, markdown, csv or flax")


def flax_table(
    model: str, input_shape: Sequence[int] | None = None, depth: int | None = None
) -> str:
    """flax's own `Module.tabulate` table for a registered model (shapes and parameter counts)."""
    spec = model_spec(model)
    shape = tuple(input_shape) if input_shape is not None else spec.input_shape
    module = create_model(model)
    x = jnp.zeros((1, *shape), spec.input_dtype)
    return module.tabulate(jax.random.key(0), x, depth=depth, console_kwargs={"width": 160})


def format_layer_names(
    model: str, input_shape: Sequence[int] | None = None, depth: int | None = None
) -> str:
    """The layer names `cnnjax.features` accepts for a registered model, in call order, with
    their output shapes; `depth` keeps names of at most that many path parts."""
    from cnnjax.features import feature_shapes

    spec = model_spec(model)
    shape = tuple(input_shape) if input_shape is not None else spec.input_shape
    shapes = feature_shapes(create_model(model), shape, spec.input_dtype)
    rows = [
        (name, "×".join(map(str, out)))
        for name, out in shapes.items()
        if depth is None or name.count("/") < depth
    ]
    width = max(len(name) for name, _ in [("layer", ""), *rows])
    lines = [f"{'layer'.ljust(width)}  output shape"] + [f"{n.ljust(width)}  {s}" for n, s in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
    from absl import flags

    del argv
    cfg = flags.FLAGS
    model_spec(cfg.model)  # unknown names fail here with the list of models
    shape = None
    if cfg.input_size is not None:
        spec_shape = model_spec(cfg.model).input_shape
        shape = (
            (cfg.input_size,)
            if len(spec_shape) == 1
            else (cfg.input_size, cfg.input_size, spec_shape[-1])
        )
    if cfg.layers:
        sys.stdout.write(format_layer_names(cfg.model, shape, cfg.depth))
        return
    if cfg.format == "flax":
        print(flax_table(cfg.model, shape, cfg.depth))
        return
    summary = summarize(cfg.model, shape, dtype=jnp.dtype(cfg.dtype), depth=cfg.depth)
    sys.stdout.write(format_summary(summary, cfg.format))


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string(
        "model", None, "registered model name (see cnnjax.list_models())", required=True
    )
    flags.DEFINE_integer("input_size", None, "input height=width (sequence length for text models)")
    flags.DEFINE_enum("format", "text", ["text", "markdown", "csv", "flax"], "output format")
    flags.DEFINE_integer("depth", None, "group rows at this depth of the module tree")
    flags.DEFINE_string("dtype", "float32", "compute dtype; sets bytes per activation")
    flags.DEFINE_boolean(
        "layers", False, "list the layer names cnnjax.features accepts (with --depth: fewer)"
    )


if __name__ == "__main__":
    from absl import app

    from cnnjax.cli import run_cli

    _define_flags()
    app.run(run_cli(main))

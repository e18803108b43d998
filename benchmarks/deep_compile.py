"""Deep networks: scanned stages against unrolled ones, and the rematerialisation policies.

    python -m benchmarks.deep_compile [--models=resnet56,resnet110,resnet1202,resnet152]

1. Trace + compile time of the train step as the runner compiles it (`Steps.train`, lowered
   and compiled), scanned (`scan=True`) ÷ unrolled (`scan=False`), side by side
   in one run; XLA's memory analysis of each compiled step; step time, alternating the two
   sides and keeping the best of each. Targets: ResNet-152 compile ≤ 0.4× unrolled,
   ResNet-1202 compiling in under 30 s, step time within 5% of unrolled.
2. `--remat` policies on ResNet-50 and DenseNet-121: peak memory of the compiled step at a
   realistic batch (memory analysis only, nothing runs) and step time at a batch this CPU can
   run.

Results go to the "Deep networks: scanned stages and remat" section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import app, flags

import cnnjax
from benchmarks.report import machine_lines, version, write_section
from cnnjax.layers.residual import REMAT_POLICIES
from cnnjax.train.config import TrainConfig
from cnnjax.train.optim import make_optimizer
from cnnjax.train.step import Steps, make_mesh

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "models",
    ["resnet56", "resnet110", "resnet1202", "resnet152", "densenet121"],
    "models compared scanned against unrolled",
)
flags.DEFINE_list(
    "skip_unrolled",
    ["resnet1202"],
    "models whose unrolled step is not compiled (ResNet-1202: over 13 minutes and 7.4 GB)",
)
flags.DEFINE_integer("batch_size", 2, "batch of the compile and step-time comparison")
flags.DEFINE_integer("imagenet_size", 224, "image side of the ImageNet models")
flags.DEFINE_integer("steps", 3, "timed steps per round")
flags.DEFINE_integer("rounds", 2, "alternating rounds of the step-time comparison")
flags.DEFINE_list("remat_models", ["resnet50", "densenet121"], "models of the remat comparison")
flags.DEFINE_integer("remat_memory_batch", 64, "per-device batch of the remat memory analysis")
flags.DEFINE_integer("remat_step_batch", 8, "batch of the remat step-time comparison")
flags.DEFINE_boolean("write_docs", True, "write the results into docs/benchmarks.md")

GiB = 2**30
NOTES = (
    "Which form: every ResNet scans its stages of more than 3 blocks by default (a two-step "
    "loop compiles slower than a third unrolled block; `--noscan` unrolls them). On the "
    "CPU backend the scanned step compiles 2-4x faster; its convolutions take their "
    "gradients as plain NHWC/HWIO convolutions (`conv_plain_backward`: autodiff's transposed "
    "ones run ~12x slower inside XLA's while loop, benchmarks/scan_conv_backward.py), so it "
    "also steps as fast or faster. ResNet-1202 does not compile unrolled in 13 minutes. "
    "DenseNet layers are not scanned (benchmarks/densenet_scan.py: each reads a wider "
    "concatenation, and a zero-padded buffer that lets one traced layer serve them all adds "
    "multiply-adds). Which `--remat`: `none` (the default) whenever the batch fits, being "
    "the fastest; `convs` (keep every conv output, recompute BN and ReLU: elementwise work "
    "only) is the first step down in memory; `blocks` (keep only each block's or dense "
    "layer's input, recompute the rest, convolutions included) saves the most. On "
    "DenseNets a remat policy also concatenates a block's maps inside each layer's checkpoint "
    "(Pleiss et al. 2017), so kept activations should grow linearly with depth, not "
    "quadratically; on the CPU backend, though, DenseNet-121's peak does not move with any "
    "policy. benchmarks/dense_remat_memory.py shows why in plain JAX: XLA:CPU merges the "
    "recomputed convolutions back into the forward pass (as many convolutions after "
    "optimisation as without remat), and with its CSE pass disabled the recomputation stays "
    "but the peak still does not drop. GPU memory was not measured (no accelerator lent)."
)


def _steps(model_name: str, batch: int, **overrides: Any) -> tuple[Steps, dict[str, Any]]:
    """The runner's Steps for `model_name` (SGD with momentum) and one random batch on device."""
    spec = cnnjax.model_spec(model_name)
    shape = spec.input_shape
    if shape[0] == 224:
        shape = (FLAGS.imagenet_size, FLAGS.imagenet_size, shape[2])
    config = TrainConfig(model=model_name, dataset="fake", batch_size=batch, momentum=0.9)
    model = cnnjax.create_model(model_name, **overrides)
    steps = Steps(model, make_optimizer(config, 100), config, make_mesh())
    rng = np.random.default_rng(0)
    local = {
        "image": rng.normal(size=(batch, *shape)).astype(np.float32),
        "label": rng.integers(0, spec.num_classes, batch).astype(np.int32),
    }
    return steps, local


def compile_step(steps: Steps, local: dict[str, Any]) -> tuple[float, Any, Any, Any]:
    """(trace + compile seconds, compiled step, state, batch): state and batch as the runner's."""
    state = steps.init(local["image"])
    batch = steps.to_global(local)
    jax.block_until_ready(state)
    start = time.perf_counter()
    compiled = steps.train.lower(state, batch).compile()
    return time.perf_counter() - start, compiled, state, batch


def peak_bytes(compiled: Any) -> int:
    """XLA's peak estimate for a compiled step: arguments + outputs + temporaries − aliased."""
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def best_step_times(runs: dict[str, Callable[[int], None]]) -> dict[str, float]:
    """Seconds per step of each side, alternating sides round by round and keeping the best."""
    for run in runs.values():
        run(1)  # warm up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(FLAGS.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(FLAGS.steps)
            times[name].append((time.perf_counter() - start) / FLAGS.steps)
    return {name: min(t) for name, t in times.items()}


def _runner(compiled: Any, state: Any, batch: Any) -> Callable[[int], None]:
    holder = {"state": state}

    def run(n: int) -> None:
        for _ in range(n):
            holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    return run


def compare_scan(model_name: str) -> dict[str, Any]:
    """Compile time, peak memory and step time of `model_name`, scanned and unrolled."""
    sides = {"scanned": {"scan": True}}
    if model_name not in FLAGS.skip_unrolled:
        sides["unrolled"] = {"scan": False}
    if not hasattr(cnnjax.create_model(model_name), "scan"):
        sides = {"unrolled": {}}  # a model without scanned stages: its one form
    result: dict[str, Any] = {}
    runs = {}
    for side in ("unrolled", "scanned"):
        if side not in sides:
            continue
        steps, local = _steps(model_name, FLAGS.batch_size, **sides[side])
        seconds, compiled, state, batch = compile_step(steps, local)
        result[side] = {"compile": seconds, "peak": peak_bytes(compiled)}
        runs[side] = _runner(compiled, state, batch)
        print(f"{model_name} {side}: compiled in {seconds:.1f} s", flush=True)
    for side, seconds in best_step_times(runs).items():
        result[side]["step"] = seconds
    return result


def compare_remat(model_name: str) -> dict[str, dict[str, float]]:
    """Per --remat policy: peak memory at the memory batch, step time at the step batch."""
    result: dict[str, dict[str, float]] = {}
    runs = {}
    for policy in REMAT_POLICIES:
        steps, local = _steps(model_name, FLAGS.remat_memory_batch, remat=policy)
        state = jax.eval_shape(lambda x, s=steps: s.init(x), local["image"])
        lowered = steps.train.lower(state, steps.to_global(local))
        big = lowered.compile()
        steps, local = _steps(model_name, FLAGS.remat_step_batch, remat=policy)
        _, compiled, state, batch = compile_step(steps, local)
        result[policy] = {"peak_big": peak_bytes(big), "peak_small": peak_bytes(compiled)}
        runs[policy] = _runner(compiled, state, batch)
        print(f"{model_name} remat={policy}: {peak_bytes(big) / GiB:.2f} GiB", flush=True)
    for policy, seconds in best_step_times(runs).items():
        result[policy]["step"] = seconds
    return result


def _scan_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        "| model | compile, unrolled | compile, scanned | scanned ÷ unrolled | peak memory, "
        "unrolled → scanned | step, unrolled | step, scanned | step ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        u, s = r.get("unrolled"), r.get("scanned")

        def cell(side: Any, key: str, fmt: str) -> str:
            return fmt.format(side[key]) if side else "—"

        ratio = f"**{s['compile'] / u['compile']:.2f}×**" if u and s else "—"
        step_ratio = f"{s['step'] / u['step']:.3f}" if u and s else "—"
        unrolled_compile = cell(u, "compile", "{:.1f} s")
        if u is None and name in FLAGS.skip_unrolled:
            unrolled_compile = "not compiled (> 13 min)"
        memory = " → ".join(f"{side['peak'] / 2**20:,.0f} MiB" if side else "—" for side in (u, s))
        rows.append(
            f"| {name} | {unrolled_compile} | {cell(s, 'compile', '{:.1f} s')} | {ratio} | "
            f"{memory} | {cell(u, 'step', '{:.3f} s')} | {cell(s, 'step', '{:.3f} s')} | "
            f"{step_ratio} |"
        )
    return rows


def _remat_rows(results: dict[str, dict[str, float]]) -> list[str]:
    base = results["none"]
    rows = [
        f"| --remat | peak memory, batch {FLAGS.remat_memory_batch} | vs none | "
        f"step, batch {FLAGS.remat_step_batch} | vs none |",
        "|---|---:|---:|---:|---:|",
    ]
    for policy, r in results.items():
        rows.append(
            f"| {policy} | {r['peak_big'] / GiB:.2f} GiB | {r['peak_big'] / base['peak_big']:.2f}× "
            f"| {r['step']:.3f} s | {r['step'] / base['step']:.2f}× |"
        )
    return rows


def main(argv: list[str]) -> None:
    del argv
    scan = {name: compare_scan(name) for name in FLAGS.models}
    remat = {name: compare_remat(name) for name in FLAGS.remat_models}
    print(json.dumps({"scan": scan, "remat": remat}), flush=True)  # raw numbers, for the record
    load = os.getloadavg()
    body = [
        "`python -m benchmarks.deep_compile` (defaults): the train step as the runner compiles "
        f"it (`Steps.train`, SGD with momentum), batch {FLAGS.batch_size}, CIFAR nets at 32², "
        f"ImageNet nets at {FLAGS.imagenet_size}², CPU backend; compile = trace + lower + "
        "XLA compile; peak memory = XLA's memory analysis of the compiled step (arguments + "
        "outputs + temporaries − donated); step = best of "
        f"{FLAGS.rounds} alternating rounds of {FLAGS.steps} steps.",
        "",
        *_scan_rows(scan),
    ]
    for name, results in remat.items():
        body += [
            "",
            f"`--remat` policies on {name} (default form, {FLAGS.imagenet_size}²):",
            "",
            *_remat_rows(results),
        ]
    body += [
        "",
        NOTES,
        "",
        f"jax {version('jax')}, flax {version('flax')}; devices: {jax.device_count()} × "
        f"{jax.devices()[0].device_kind}. Load average when the table was written: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on a machine shared with "
        "other jobs: absolute times are loaded, the side-by-side ratios less so.",
        "",
        *machine_lines(),
    ]
    text = "\n".join(body)
    print(text)
    if FLAGS.write_docs:
        write_section("Deep networks: scanned stages and remat", text)


if __name__ == "__main__":
    app.run(main)

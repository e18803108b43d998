"""ResNet-50 training on the accelerator found: step img/s, model FLOP utilisation, XLA flags.

    python -m benchmarks.gpu [--batch_size=256 --loader_cores=8 --write_docs]

For the device JAX finds (GPU, TPU, or CPU as a smoke test) it reports:

1. the bf16 train step (`Steps.train`, SGD + momentum) on synthetic data already on the
   device, in img/s, and the model FLOP utilisation: 6 × the model's own MAC count per image
   (`cnnjax.summary`: forward 2 FLOPs per MAC, backward twice the forward) × img/s ÷ the
   device's peak dense bf16 FLOP/s (`PEAK_TFLOPS`, or `--peak_tflops`);
2. the same step fed by the real loader as the runner feeds it (`make_run_loader` on a
   prepared synthetic `imagenet2012` set of 500x375 JPEGs, uint8 to the device, normalised in
   the step, `Steps.prefetch`), with the loader pinned to `--loader_cores` host cores;
3. each set of XLA flags in `FLAG_SETS` against none, on the synthetic step.

Every measurement runs in a fresh process, because XLA_FLAGS are read when the backend starts.
`--write_docs` records the table in the "GPU" section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

REPO = Path(__file__).resolve().parents[1]

# Flags measured against XLA's defaults; each entry: (name, XLA_FLAGS value, why).
FLAG_SETS = {
    "latency-hiding scheduler": (
        "--xla_gpu_enable_latency_hiding_scheduler=true",
        "schedules collectives and copies to overlap compute (matters with several GPUs; "
        "with one it only reorders)",
    ),
    "autotune level 4": (
        "--xla_gpu_autotune_level=4",
        "autotunes convolution and GEMM algorithms more thoroughly (default 4 already on "
        "recent XLA: the measurement says whether it matters here)",
    ),
}
# Peak dense bf16 tensor throughput in TFLOP/s by jax `device_kind` substring (vendor specs).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM; PCIe parts are lower, pass --peak_tflops
    "A100": 312.0,
    "L4": 121.0,
    "V100": 125.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
}

_MODEL = flags.DEFINE_string("model", "resnet50", "model to train")
_BATCH = flags.DEFINE_integer("batch_size", 256, "global batch")
_SIZE = flags.DEFINE_integer("image_size", 224, "input side")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype")
_STEPS = flags.DEFINE_integer("steps", 30, "timed steps per measurement")
_WARMUP = flags.DEFINE_integer("warmup", 3, "untimed steps after compilation")
_LOADER_CORES = flags.DEFINE_integer(
    "loader_cores", 0, "host cores the loader measurement may use (0: all available)"
)
_LOADER_IMAGES = flags.DEFINE_integer(
    "loader_images", 1024, "training images in the synthetic prepared set"
)
_WORKERS = flags.DEFINE_integer("workers", 0, "loader worker processes (0: threads, as default)")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "peak bf16 TFLOP/s of the device (0: look up)")
_FLAG_SETS = flags.DEFINE_list(
    "flag_sets", list(FLAG_SETS), "FLAG_SETS entries to measure ('' for none)"
)
_WRITE = flags.DEFINE_boolean("write_docs", False, "write the 'GPU' section of docs/benchmarks.md")
_CHILD = flags.DEFINE_enum("child", None, ["synthetic", "loader"], "internal: one measurement")
_DATA = flags.DEFINE_string("data_dir", None, "internal: the prepared set (loader child)")


def _steps_and_state(config):
    """The run's compiled steps for `config` and an initial state (resnet: 1000 classes)."""
    import numpy as np

    import cnnjax
    import cnnjax.data as cdata
    from cnnjax.train.optim import make_optimizer
    from cnnjax.train.run_inputs import device_normalization
    from cnnjax.train.step import Steps, make_mesh

    info = cdata.dataset_info(config.dataset)
    model = cnnjax.create_model(config.model, num_classes=1000, dtype=config.dtype)
    steps = Steps(
        model,
        make_optimizer(config, 1000),
        config,
        make_mesh(),
        normalization=device_normalization(config, info),
    )
    channels = cnnjax.model_spec(config.model).input_shape[-1]
    state = steps.init(np.zeros((config.batch_size, _SIZE.value, _SIZE.value, channels)))
    return steps, state


def _timed(steps, state, next_batch) -> float:
    """img/s of `--steps` train steps after compilation and `--warmup` steps."""
    import jax

    for _ in range(1 + _WARMUP.value):
        state, metrics = steps.train(state, next_batch())
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        state, metrics = steps.train(state, next_batch())
    jax.block_until_ready(metrics)
    return _STEPS.value * _BATCH.value / (time.perf_counter() - start)


def _config(dataset: str, data_dir: str | None = None):
    from cnnjax.train.config import TrainConfig

    return TrainConfig(
        model=_MODEL.value,
        dataset=dataset,
        data_dir=data_dir,
        image_size=_SIZE.value,
        batch_size=_BATCH.value,
        dtype=_DTYPE.value,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        workers=_WORKERS.value,
    )


def _synthetic_child() -> dict:
    """The train step on one uint8 batch kept on the device (normalised in the step)."""
    import jax
    import numpy as np

    steps, state = _steps_and_state(_config("imagenet2012"))
    rng = np.random.default_rng(0)
    batch = steps.to_global(
        {
            "image": rng.integers(0, 256, (_BATCH.value, _SIZE.value, _SIZE.value, 3), np.uint8),
            "label": rng.integers(0, 1000, _BATCH.value).astype(np.int32),
        }
    )
    rate = _timed(steps, state, lambda: batch)
    device = jax.devices()[0]
    return {"images_per_s": rate, "device": device.device_kind, "devices": jax.device_count()}


def _loader_child() -> dict:
    """The train step fed by the runner's loader and device prefetch, on the pinned cores."""
    from cnnjax.train.run_inputs import make_run_loader

    config = _config("imagenet2012", _DATA.value)
    steps, state = _steps_and_state(config)
    loader = make_run_loader(
        config, "train", train=True, batch_size=_BATCH.value, image_size=_SIZE.value
    )
    batches = steps.prefetch(loader)
    try:
        rate = _timed(steps, state, lambda: next(batches))
    finally:
        batches.close()
    return {"images_per_s": rate}


def _run_child(kind: str, xla_flags: str, cores: list[int] | None, data_dir: str = "") -> dict:
    """One measurement in a fresh process (XLA_FLAGS set, optionally pinned to `cores`)."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        f"--child={kind}",
        f"--model={_MODEL.value}",
        f"--batch_size={_BATCH.value}",
        f"--image_size={_SIZE.value}",
        f"--dtype={_DTYPE.value}",
        f"--steps={_STEPS.value}",
        f"--warmup={_WARMUP.value}",
        f"--workers={_WORKERS.value}",
    ]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    env = dict(os.environ, XLA_FLAGS=xla_flags)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    preexec = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    proc = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=REPO, preexec_fn=preexec, check=False
    )
    results = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not results:
        raise RuntimeError(f"{kind} (XLA_FLAGS={xla_flags!r}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(results[-1])


def model_macs(model: str, image_size: int) -> int:
    """Multiply-accumulates of one forward pass of one image (conv and dense layers)."""
    from cnnjax.summary import summarize

    return summarize(model, (image_size, image_size, 3)).total_macs


def peak_tflops(device_kind: str) -> float | None:
    """The device's peak dense bf16 TFLOP/s: --peak_tflops, else PEAK_TFLOPS, else None (CPU)."""
    if _PEAK.value:
        return _PEAK.value
    for key, value in PEAK_TFLOPS.items():
        if key.lower() in device_kind.lower():
            return value
    return None


def _report(rows: list[tuple[str, str, float]], device: str, devices: int, macs: int) -> str:
    """Markdown: what was measured, img/s, MFU and the XLA flags' effect."""
    peak = peak_tflops(device)
    lines = [
        f"`python -m benchmarks.gpu`: {_MODEL.value} {_DTYPE.value} train step, batch "
        f"{_BATCH.value}, {_SIZE.value}² inputs, {_STEPS.value} timed steps; device: "
        f"{devices} × {device}. MFU = 6 × {macs / 1e9:.2f} GMAC/image (the model's own count, "
        f"`cnnjax.summary`) × img/s ÷ "
        + (f"{peak:g} TFLOP/s peak dense bf16 per device." if peak else "(no peak known: n/a).")
    ]
    lines += ["", "| measurement | XLA_FLAGS | img/s | MFU |", "|---|---|---:|---:|"]
    for name, xla_flags, rate in rows:
        mfu = f"{6 * macs * rate / (peak * 1e12 * devices):.1%}" if peak else "n/a"
        lines.append(f"| {name} | `{xla_flags or '(none)'}` | {rate:,.0f} | {mfu} |")
    lines += ["", "Flags measured:"]
    for name in _FLAG_SETS.value:
        if name:
            value, why = FLAG_SETS[name]
            lines.append(f"- {name} (`{value}`): {why}.")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Run every measurement in its own process and print (optionally record) the table."""
    del argv
    if _CHILD.value:
        result = _synthetic_child() if _CHILD.value == "synthetic" else _loader_child()
        print(json.dumps(result), flush=True)
        return
    unknown = [name for name in _FLAG_SETS.value if name and name not in FLAG_SETS]
    if unknown:
        raise app.UsageError(f"--flag_sets: unknown {unknown}; choose from {list(FLAG_SETS)}")
    available = sorted(os.sched_getaffinity(0))
    if not 0 <= _LOADER_CORES.value <= len(available):
        raise app.UsageError(f"--loader_cores must be between 0 and {len(available)}")
    cores = available[: _LOADER_CORES.value or len(available)]
    base = _run_child("synthetic", "", None)
    rows = [("step, synthetic data on device", "", base["images_per_s"])]
    for name in _FLAG_SETS.value:
        if name:
            flagged = _run_child("synthetic", FLAG_SETS[name][0], None)
            rows.append((f"step, synthetic, {name}", FLAG_SETS[name][0], flagged["images_per_s"]))
    with tempfile.TemporaryDirectory() as tmp:
        from benchmarks.imagenet_set import prepare_set

        data_dir, _ = prepare_set(Path(tmp), _LOADER_IMAGES.value)
        loader = _run_child("loader", "", cores, data_dir)
    kind = f"{_WORKERS.value} worker processes" if _WORKERS.value else "threads"
    rows.append(
        (f"step fed by the loader ({len(cores)} host cores, {kind})", "", loader["images_per_s"])
    )
    section = _report(rows, base["device"], base["devices"], model_macs(_MODEL.value, _SIZE.value))
    print(section)
    if _WRITE.value:
        from benchmarks.report import write_section

        write_section("GPU", section, REPO / "docs" / "benchmarks.md")


if __name__ == "__main__":
    app.run(main)

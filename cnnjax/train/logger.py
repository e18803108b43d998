"""What a run writes for people: metrics.jsonl, TensorBoard events, curves.png (process 0 only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one JSON object per log/eval event and mirrors scalars to TensorBoard.

    `start_step`: the step the run starts (or resumes) from. Events logged after it by an
    interrupted session, whose checkpoint was lost, are dropped from metrics.jsonl and purged
    from TensorBoard, so each step's events appear once, as the resumed run logs them again.
    """

    def __init__(self, workdir: str | Path, enabled: bool = True, start_step: int = 0):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self.start = time.time()
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.workdir.mkdir(parents=True, exist_ok=True)
            self._drop_events_after(start_step)
            self._writer = SummaryWriter(
                str(self.workdir / "tensorboard"), purge_step=start_step + 1
            )

    def _drop_events_after(self, step: int) -> None:
        """Rewrite metrics.jsonl without the events of steps after `step` (atomically)."""
        events = read_metrics(self.metrics_path)
        kept = [e for e in events if e["step"] <= step]
        if len(kept) == len(events):
            return
        partial = self.metrics_path.with_suffix(".jsonl.tmp")
        partial.write_text("".join(json.dumps(e) + "\n" for e in kept))
        partial.replace(self.metrics_path)

    @property
    def metrics_path(self) -> Path:
        return self.workdir / "metrics.jsonl"

    def log(self, split: str, step: int, epoch: float, values: dict[str, float]) -> None:
        """One event: `split` is 'train', 'dev' or 'eval'; values are plain floats."""
        if not self.enabled:
            return
        record = {
            "split": split,
            "step": int(step),
            "epoch": round(float(epoch), 4),
            "wall_time": round(time.time() - self.start, 3),
            **values,
        }
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in values.items():
            self._writer.add_scalar(f"{split}/{name}", value, int(step))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The events of a metrics.jsonl file, in order."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: str | Path, out_path: str | Path) -> Path:
    """loss, top-1 and learning rate against step, train and eval, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = read_metrics(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("loss", "loss"), ("top1", "top-1 accuracy"), ("lr", "learning rate"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for split, style in (("train", "-"), ("dev", "s--"), ("eval", "o-")):
            points = [(e["step"], e[key]) for e in events if e["split"] == split and key in e]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=split, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path

"""Writing benchmark results into docs/benchmarks.md, with the machine they ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(accelerator: str = "none (CPU only)") -> list[str]:
    """CPU model, cores, RAM, OS and Python of this machine, as Markdown bullet lines."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    cache = re.search(r"cache size\s*:\s*(.+)", cpuinfo)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = re.search(r"MemTotal:\s*(\d+)", meminfo)
    return [
        f"- CPU: {model.group(1).strip() if model else platform.processor() or 'unknown'}"
        + (f" ({cache.group(1).strip()} cache)" if cache else ""),
        f"- Cores available: {len(os.sched_getaffinity(0))} (os.cpu_count() = {os.cpu_count()})",
        f"- RAM: {int(mem_kb.group(1)) / 2**20:.1f} GiB" if mem_kb else "- RAM: unknown",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- Accelerator: {accelerator}",
    ]


def replace_section(text: str, heading: str, body: str) -> str:
    """Replace the `## heading` section of a Markdown text (append it when absent)."""
    section = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    return text.rstrip() + ("\n\n" if text.strip() else "") + section


def write_section(heading: str, body: str, path: Path = DOCS) -> None:
    """Write one section of the benchmarks page, creating the page and its Machine section."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if not re.search(r"^## Machine\n", text, re.M):
        machine = "Measured on this machine unless a section says otherwise:\n\n"
        text = replace_section(text, "Machine", machine + "\n".join(machine_lines()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, heading, body))

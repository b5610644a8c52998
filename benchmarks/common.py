"""Shared helpers of the benchmark scripts: device description, timing, peak memory, tables."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def device_line(device: str, threads: str | None = None) -> str:
    """One line naming the machine the numbers come from."""
    threads = threads or str(torch.get_num_threads())
    parts = [f"CPU: {cpu_name()} ({cpu_count()} cores available, torch threads {threads}, "
             f"capability {torch.backends.cpu.get_cpu_capability()})"]
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        prop = torch.cuda.get_device_properties(idx)
        parts.insert(0, f"GPU: {prop.name} ({prop.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                        f"cuDNN {torch.backends.cudnn.version()})")
    parts.append(f"torch {torch.__version__}")
    parts.append(f"date {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    parts.append(f"load average at start {load_average()}")
    return "; ".join(parts)


# ---- timing -----------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: str = "cpu") -> tuple[Any, float]:
    """(result, milliseconds); on CUDA timed with events between synchronisations."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        return out, start.elapsed_time(end)
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---- memory -----------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


class PeakMemory:
    """Peak memory of a block: on CUDA torch's allocator peak (max_memory_allocated); on the CPU the
    process's peak RSS (VmHWM, reset through /proc/self/clear_refs). `peak_mb` is absolute,
    `extra_mb` is the peak above what was resident when the block started."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.peak_mb = float("nan")
        self.extra_mb = float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated() / 2**20
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._resettable = True
            except OSError:
                self._resettable = False
            self._base = rss_mb()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            kb = _status_kb("VmHWM")
            self.peak_mb = kb / 1024 if (kb is not None and self._resettable) else float("nan")
        self.extra_mb = self.peak_mb - self._base


# ---- output -----------------------------------------------------------------------------------
def fmt(v: Any, digits: int = 1) -> str:
    """Numbers for a table: floats with `digits` decimals, nan as n/a."""
    if isinstance(v, float):
        if v != v:  # nan
            return "n/a"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(headers: list[str], rows: list[list[Any]], digits: dict[int, int] | None = None) -> str:
    """A markdown table; digits maps a column index to its decimals (default 1)."""
    digits = digits or {}
    cells = [[c if isinstance(c, str) else fmt(c, digits.get(i, 1)) for i, c in enumerate(row)] for row in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        w, h = part.lower().strip().split("x")
        out.append((int(w), int(h)))
    return out

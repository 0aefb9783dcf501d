"""Host facts recorded with every result, the machine slug of the result files, and peak memory."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to what platform knows
    return platform.processor() or platform.machine() or "unknown CPU"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def host_facts(device: torch.device, *, sizes: str, busy: bool) -> dict[str, Any]:
    """Everything a reader needs to judge a number: hardware, software, threads, load, and the run's mode."""
    facts: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": sizes,
        "quick": sizes == "quick",
        "machine_busy": busy,
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu_name=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda_version=torch.version.cuda,
        )
    return facts


def slug(text: str) -> str:
    text = re.sub(r"\((?:R|TM|tm)\)|\bCPU\b|@.*$", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def machine_slug(facts: dict[str, Any]) -> str:
    """A short file name for the machine: the GPU's name on CUDA, else the CPU model and its usable cores."""
    if str(facts["device"]).startswith("cuda"):
        return slug(facts["gpu_name"])
    return f"{slug(facts['cpu_model'])}-{facts['cpu_cores_usable']}c"


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (getrusage: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@contextlib.contextmanager
def memory_meter(device: torch.device) -> Iterator[dict[str, float]]:
    """Fills the yielded dict on exit: host peak RSS of the process so far, CUDA max allocated within the block."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield out
    finally:
        out["host_peak_rss_mib"] = round(peak_rss_mib(), 1)
        if device.type == "cuda":
            out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            out["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)

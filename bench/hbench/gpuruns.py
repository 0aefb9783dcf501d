"""The parts of bench/gpu_check.py that time whole commands and generation (issue 29), and the time budget.

- `train_end_to_end`: wall time of `python -m hmolqd train` of the default model (the notebook's CONFIG), with the
  moment each epoch's line appeared, so the VQ-VAE and diffusion stages and the final outputs are timed apart;
- `generation_speed`: `hmolqd.generate` rooms/s at each n, after a warm-up, the device synchronized around each call,
  median and range of a few calls;
- `illuminate_run`: wall time of `python -m hmolqd illuminate --model M --evaluations N --out DIR`, with the
  moment of each batch's progress line, so a run cut short by the budget still gives evaluations per second.

Commands run in a child process whose output is read line by line and timestamped (`stream`); one that would
outlive its deadline is killed (SIGKILL) and its result says "cut short: time budget". Never run on a GPU yet.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hbench.host import REPO
from hbench.suite import Context
from hmolqd.config import Config

CUT_SHORT = "cut short: time budget"
RECORD_LINE = re.compile(r"^\[(\w+)\] epoch (\d+) step (\d+):")  # `validation.format_record`
PROGRESS_LINE = re.compile(r"^(\d+) evaluations: coverage ([\d.]+) %, QD score ([\d.]+)")  # the illuminate CLI's


@dataclass
class Budget:
    """The script's time budget, counted from its creation (time.monotonic)."""

    total_s: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def deadline(self, cap_s: float | None = None) -> float:
        """The monotonic time a part must end by: the budget's end, or `cap_s` from now if that comes first."""
        end = self.start + self.total_s
        return end if cap_s is None else min(end, time.monotonic() + cap_s)


@dataclass
class Streamed:
    returncode: int | None  # None: killed at its deadline
    wall_s: float
    lines: list[tuple[float, str]]  # (seconds after start, line)

    @property
    def cut_short(self) -> bool:
        return self.returncode is None

    def tail(self, chars: int = 2000) -> str:
        return "\n".join(line for _, line in self.lines)[-chars:]


def child_env() -> dict[str, str]:
    """The repository's hmolqd first on the path (also where it is not pip-installed), output unbuffered."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def launch(cfg: Config, root: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`python -m hmolqd train --config <json>` in a new process (its output in <name>.log)."""
    path = root / f"{name}.json"
    path.write_text(cfg.to_json(), encoding="utf-8")
    log = root / f"{name}.log"
    with log.open("a", encoding="utf-8") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hmolqd", "train", "--config", str(path)],
            cwd=REPO,
            env=child_env(),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def hmolqd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hmolqd", *args]


def stream(command: list[str], log: Path, deadline: float) -> Streamed:
    """Run `command`, timestamping each output line (also written to `log`); SIGKILL at `deadline` (monotonic)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        with log.open("w", encoding="utf-8") as f:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append((time.monotonic() - start, line.rstrip("\n")))
                f.write(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc: int | None = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    reader.join(timeout=10)
    return Streamed(rc, time.monotonic() - start, lines)


def _mib(path: Path) -> float | None:
    return round(path.stat().st_size / 2**20, 2) if path.is_file() else None


def stage_times(lines: list[tuple[float, str]]) -> dict[str, dict[str, Any]]:
    """Per stage: epochs logged, when its first and last epoch lines appeared, seconds per epoch between them."""
    stages: dict[str, dict[str, Any]] = {}
    for t, line in lines:
        m = RECORD_LINE.match(line)
        if m:
            s = stages.setdefault(m[1], {"epochs": 0, "first_epoch_line_s": t})
            s.update(epochs=int(m[2]), last_epoch_line_s=t, last_step=int(m[3]))
    for s in stages.values():
        span = s["last_epoch_line_s"] - s["first_epoch_line_s"]
        s["s_per_epoch"] = span / (s["epochs"] - 1) if s["epochs"] > 1 else None
    return stages


def train_end_to_end(ctx: Context, base: Config, label: str, deadline: float) -> dict[str, Any]:
    """Train `base` (`label`: e.g. the notebook's CONFIG, the default model) from scratch in a child process, as a
    user would; the result's "model" is its model_final.pt (None unless it finished)."""
    cfg = ctx.config(base, "train_end_to_end")
    root = Path(cfg.paths.checkpoint_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    run = stream(hmolqd_command("train", "--config", str(root / "config.json")), root / "train.log", deadline)
    out = Path(cfg.paths.output_dir)
    stages = stage_times(run.lines)
    last_line = max((s["last_epoch_line_s"] for s in stages.values()), default=None)
    result = {
        "command": f"python -m hmolqd train --config <{label}, with this run's folders>",
        "use_amp": cfg.train.use_amp,
        "epochs": {"vqvae": cfg.train.vqvae_epochs, "diffusion": cfg.train.num_epochs},
        "wall_s": run.wall_s,
        "first_line_s": run.lines[0][0] if run.lines else None,
        "stages": stages,
        "after_last_epoch_s": None if last_line is None or run.cut_short else run.wall_s - last_line,
        "model_final_mib": _mib(out / "model_final.pt"),
        "outputs_zip_mib": _mib(out / "h_molqd_outputs.zip"),
        "returncode": run.returncode,
        "cut_short": CUT_SHORT if run.cut_short else None,
        "ok": None if run.cut_short else run.returncode == 0,  # None: not a failure, the budget ended it
        "model": str(out / "model_final.pt") if run.returncode == 0 else None,
    }
    if run.returncode not in (0, None):
        raise RuntimeError(f"train exited {run.returncode}; end of its output:\n{run.tail()}")
    ctx.say(f"[gpu_check]   trained in {run.wall_s:.1f} s" + (f" ({CUT_SHORT})" if run.cut_short else ""))
    return result


def timed_calls(device: torch.device, call: Any, min_s: float, max_calls: int) -> list[float]:
    """Seconds of `call(i)` for i = 0, 1, ..., each between two synchronizations of `device`, until `min_s`
    seconds are measured (at least 3 calls) or `max_calls`."""
    times: list[float] = []
    while len(times) < max_calls and (len(times) < 3 or sum(times) < min_s):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call(len(times))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def generation_speed(model_path: Path, device: torch.device, sizes: tuple[int, ...], deadline: float) -> dict:
    """`hmolqd.generate(model, n)` with its defaults (batch size, sampling settings of the model), per n."""
    from hmolqd import generate, load_model

    model = load_model(model_path).to(device)
    generate(model, 64, seed=0)  # warm-up: kernels, allocator, lazy init
    rows, skipped = [], []
    for n in sizes:
        if time.monotonic() > deadline:
            skipped.append(f"n={n}: skipped: time budget")
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = timed_calls(device, lambda i, n=n: generate(model, n, seed=i), min_s=2.0, max_calls=5)
        rates = [n / t for t in times]
        rows.append(
            {
                "n": n,
                "rooms_per_s": statistics.median(rates),
                "rooms_per_s_min": min(rates),
                "rooms_per_s_max": max(rates),
                "calls": len(times),
                "seconds": times,
                "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20
                if device.type == "cuda"
                else None,
            }
        )
    return {"device": str(device), "torch_threads": torch.get_num_threads(), "rows": rows, "skipped": skipped}


def illuminate_run(model_path: Path, workdir: Path, evaluations: int, batch_size: int, deadline: float) -> dict:
    """`python -m hmolqd illuminate` in a child process; a run cut at its deadline reports how far it got."""
    import importlib.util

    if importlib.util.find_spec("ribs") is None:
        raise RuntimeError("illuminate needs pyribs: pip install -e '.[qd]'")
    out = workdir / "illuminate"
    args = ["illuminate", "--model", str(model_path), "--evaluations", str(evaluations), "--out", str(out)]
    run = stream(hmolqd_command(*args, "--batch-size", str(batch_size)), workdir / "illuminate.log", deadline)
    progress = [
        {"s": t, "evaluations": int(m[1]), "coverage_percent": float(m[2]), "qd_score": float(m[3])}
        for t, line in run.lines
        if (m := PROGRESS_LINE.match(line))
    ]
    done = progress[-1]["evaluations"] if progress else 0
    if run.returncode not in (0, None):
        raise RuntimeError(f"illuminate exited {run.returncode}; end of its output:\n{run.tail()}")
    return {
        "command": f"python -m hmolqd illuminate --model M --evaluations {evaluations} --out DIR --batch-size "
        f"{batch_size}",
        "evaluations_asked": evaluations,
        "evaluations_done": done,
        "wall_s": run.wall_s,
        "evaluations_per_s": done / progress[-1]["s"] if progress and progress[-1]["s"] > 0 else None,
        # after the first batch: without the start-up (imports, loading the model) and the first batch's warm-up
        "evaluations_per_s_after_first_batch": (done - progress[0]["evaluations"])
        / (progress[-1]["s"] - progress[0]["s"])
        if len(progress) > 1 and progress[-1]["s"] > progress[0]["s"]
        else None,
        "first_batch_s": progress[0]["s"] if progress else None,
        "progress": progress,
        "last_lines": [line for _, line in run.lines[-3:]],
        "returncode": run.returncode,
        "cut_short": CUT_SHORT if run.cut_short else None,
        "ok": None if run.cut_short else run.returncode == 0,
    }

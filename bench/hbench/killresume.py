"""SIGKILL and resume on the GPU, once per mixed-precision dtype (bench/gpu_check.py's `resume` part).

`python -m hmolqd train` of the default model is killed with SIGKILL just after its first diffusion step checkpoint
appears, re-run to the end, and compared with an uninterrupted run of the same dtype within 10x the GPU's
run-to-run noise (two uninterrupted runs), as `hmolqd.training.selfcheck` does. The two uninterrupted runs and
the run to kill start together (three small processes share the GPU), which saves two run lengths of the time
budget; only the resumed run follows them. A dtype whose runs would not fit in the budget is skipped and says so.
The fp16 check passed on an H200 when the runs went one after the other (bench/results/gpu_h200-2026-12-04.md);
the runs started together have not yet run on a GPU.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hbench.gpuruns import CUT_SHORT, launch
from hbench.suite import Context
from hmolqd.checkpointing.compare import compare_states
from hmolqd.checkpointing.fileformat import LATEST, load_checkpoint
from hmolqd.config import Config

# Checkpoint keys that differ between two runs reaching the same state (config: only its paths), as in selfcheck.
RUN_SPECIFIC = ("timestamp", "elapsed", "integrity", "run_id")
DIFFUSION_STEP_GLOB = "checkpoint_step_*.pt"  # the diffusion stage's step checkpoints (other stages put their name in)
REFERENCES = ("reference", "reference_again")


class OutOfTime(Exception):
    """A run of this check would outlive the time budget (it was killed)."""


@dataclass(frozen=True)
class ResumePlan:
    epochs: tuple[int, int]  # (vqvae, diffusion) epochs of every run
    step_every: int  # checkpoint_every_steps: the kill comes just after the first diffusion step checkpoint
    kill_delay: float  # seconds between that checkpoint appearing and the SIGKILL
    min_s: float  # a dtype is started only with this much of the budget left


def comparable(checkpoint_dir: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint_dir / LATEST)
    return {
        **{k: v for k, v in ckpt.items() if k not in (*RUN_SPECIFIC, "config")},
        "config": {k: v for k, v in ckpt["config"].items() if k != "paths"},
    }


def finish(proc: subprocess.Popen, log: Path, name: str, deadline: float) -> None:
    """Wait for a training process; kill it at the deadline (OutOfTime); a failure raises with its log's end."""
    try:
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise OutOfTime(f"{name} was still training at the end of the time budget") from None
    if code != 0:
        raise RuntimeError(f"{name}: train exited {code}; end of its log:\n{log.read_text(encoding='utf-8')[-2000:]}")


def kill_and_resume(ctx: Context, base: Config, plan: ResumePlan, deadline: float) -> dict[str, Any]:
    """bf16 first where the device has it (the dtype AMP picks on such a GPU), then fp16 with its GradScaler."""
    bf16 = torch.cuda.is_bf16_supported() if ctx.device.type == "cuda" else True
    runs: dict[str, dict[str, Any]] = {}
    for amp in ("bf16", "fp16") if bf16 else ("fp16",):
        if deadline - time.monotonic() < plan.min_s:
            runs[amp] = {"use_amp": amp, "ok": None, "skipped": "skipped: time budget"}
            continue
        try:
            runs[amp] = kill_and_resume_one(ctx, base, amp, plan, deadline)
        except OutOfTime as err:
            runs[amp] = {"use_amp": amp, "ok": None, "skipped": f"{CUT_SHORT} ({err})"}
    return {
        "ok": all(r["ok"] is not False for r in runs.values()),
        "runs": runs,
        "skipped": None if bf16 else "bf16: this GPU has no bf16 support (torch.cuda.is_bf16_supported() is False)",
    }


def kill_and_resume_one(ctx: Context, base: Config, amp: str, plan: ResumePlan, deadline: float) -> dict[str, Any]:
    root = ctx.workdir / f"kill_resume_{amp}"
    root.mkdir(parents=True, exist_ok=True)

    def cfg(name: str) -> Config:
        return ctx.config(
            base,
            f"{name}_{amp}",
            vqvae_epochs=plan.epochs[0],
            num_epochs=plan.epochs[1],
            joint_epochs=0,
            sample_every=0,
            sample_steps=2,
            checkpoint_every_steps=plan.step_every,
            auto_resume=True,
            use_amp=amp,
            name="kill_resume",
        )  # one run name: equal configs

    start = time.monotonic()
    references = {name: launch(cfg(name), root, name) for name in REFERENCES}
    victim = cfg("killed")
    ckpt_dir = Path(victim.paths.checkpoint_dir)
    proc, log = launch(victim, root, "killed")
    while proc.poll() is None and not any(ckpt_dir.glob(DIFFUSION_STEP_GLOB)) and time.monotonic() < deadline:
        time.sleep(0.01)
    if time.monotonic() >= deadline:
        for p, _ in (*references.values(), (proc, log)):
            p.kill()
        raise OutOfTime("the run to kill wrote no diffusion step checkpoint within the time budget")
    time.sleep(plan.kill_delay)
    if proc.poll() is not None:
        for p, _ in references.values():
            p.kill()
        raise RuntimeError(
            f"the run to kill ended (exit {proc.returncode}) before it could be killed; end of its log:\n"
            f"{log.read_text(encoding='utf-8')[-2000:]}"
        )
    killed_at = sorted(p.name for p in ckpt_dir.glob("checkpoint_*.pt"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    for name, (p, ref_log) in references.items():
        finish(p, ref_log, name, deadline)
    together_s = time.monotonic() - start
    proc, log = launch(victim, root, "killed")
    finish(proc, log, "the resumed run", deadline)
    resumed_log = log.read_text(encoding="utf-8")
    noise = compare_states(
        comparable(Path(cfg("reference").paths.checkpoint_dir)),
        comparable(Path(cfg("reference_again").paths.checkpoint_dir)),
        atol=float("inf"),
    ).max_abs_diff
    tolerance = 10 * noise
    cmp = compare_states(comparable(ckpt_dir), comparable(Path(cfg("reference").paths.checkpoint_dir)), atol=tolerance)
    ok = not cmp.diffs and "Resuming from" in resumed_log
    final = load_checkpoint(ckpt_dir / LATEST)
    ctx.say(
        f"[gpu_check]   {amp}: killed after {killed_at}; resumed vs uninterrupted max |diff| {cmp.max_abs_diff:.3g} "
        f"(run-to-run noise {noise:.3g}, tolerance {tolerance:.3g}): {'PASS' if ok else 'FAIL'}"
    )
    return {
        "ok": ok,
        "use_amp": amp,
        "epochs": list(plan.epochs),
        "checkpoint_every_steps": plan.step_every,
        "files_when_killed": killed_at,
        "grad_scaler": final["scaler"],
        "skipped_steps": sum(int(r.get("skipped_steps", 0)) for r in final["history"]),
        "exit_signal": "SIGKILL",
        "resumed_said_resuming": "Resuming from" in resumed_log,
        "run_to_run_noise": noise,
        "tolerance": tolerance,
        "max_abs_diff": cmp.max_abs_diff,
        "tensors_compared": cmp.tensors,
        "differences": cmp.diffs[:10],
        "seconds": {"three_runs_together": together_s, "resumed": time.monotonic() - start - together_s},
    }

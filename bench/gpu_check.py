"""The GPU checks of issues 13 and 20 in one command, ready for the first session that has a GPU (never run on one yet):

    PYTHONUNBUFFERED=1 python bench/gpu_check.py [--data DIR] [--out DIR]

1. environment: hmolqd's notebook environment report, torch / CUDA / GPU facts, nvidia-smi.
2. autocast paths: real optimizer steps (`Optimization.step`, the trainer's own) of the VQ-VAE and diffusion
   objectives under `use_amp` = false (fp32), "fp16" (autocast + GradScaler, a T4's path, forced even where bf16
   is native) and "bf16" (compute capability >= 8.0), each runtime built by `setup_runtime` from that value:
   losses finite and falling, steps the GradScaler skipped, steps/s, CUDA max allocated.
3. SIGKILL and resume, once per dtype (use_amp "fp16", then "bf16" where supported): `python -m hmolqd train` on
   the GPU (the default model) is killed with SIGKILL just after its first diffusion step checkpoint appears,
   re-run to the end, and compared with an uninterrupted run of the same dtype within 10x the GPU's run-to-run
   noise (two uninterrupted runs), as `hmolqd.training.selfcheck` does.
4. the suite (`bench/run.py`) on CUDA with AMP: the notebook's default model, sizes `gpu`, CUDA memory per section.

Whether the fp16 and bf16 paths reach fp32's quality is a longer run, outside this script: e.g.
`python bench/quality_seeds.py --preset gpu --seeds 0 --set device=cuda --set use_amp=fp16 \
--out bench/results/quality_gpu_fp16`
(and `use_amp=bf16`, `use_amp=false`), compared with the 3-seed range of bench/results/quality_cpu.md.

Writes gpu_check.json and gpu_check.md, and the suite's <gpu>.json / .md / -quality.png, under $OUT when set,
else bench/results; each file is rewritten after every step, so a run cut short keeps what it measured.
Exit status: 2 when no usable GPU is visible (nothing runs), 1 when a check failed, 0 otherwise.
`--cpu-plumbing` runs the same steps on the CPU with the smoke preset and tiny sizes: it tests this script
where there is no GPU, and its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the repo's hmolqd, also where it is not pip-installed

from hbench.host import REPO, host_facts  # noqa: E402
from hbench.sizes import GPU, TINY  # noqa: E402
from hbench.suite import Context, base_config, run_suite  # noqa: E402

from hmolqd.atomic import atomic_write_text  # noqa: E402
from hmolqd.checkpointing.compare import compare_states  # noqa: E402
from hmolqd.checkpointing.fileformat import LATEST, load_checkpoint  # noqa: E402
from hmolqd.config import Config, stage_named  # noqa: E402
from hmolqd.evaluation.report import json_safe  # noqa: E402
from hmolqd.models.room_model import RoomModel  # noqa: E402
from hmolqd.training.optim import LRSchedule, Optimization  # noqa: E402
from hmolqd.training.runtime import Runtime, UnsupportedGPUError, check_gpu_supported, setup_runtime  # noqa: E402
from hmolqd.training.stages import objective, set_train_mode, stage_data, start_diffusion_stage, trainable  # noqa: E402

PARTS = ("env", "autocast", "resume", "suite")
# Checkpoint keys that differ between two runs reaching the same state (config: only its paths), as in selfcheck.
RUN_SPECIFIC = ("timestamp", "elapsed", "integrity", "run_id")
DIFFUSION_STEP_GLOB = "checkpoint_step_*.pt"  # the diffusion stage's step checkpoints (other stages put their name in)


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    from run import default_data_dir  # bench/run.py, beside this file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data",
        default=default_data_dir(),
        help="VGLC Zelda folder (default: $HMOLQD_VGLC_DIR, ../shared/data/vglc-zelda, or discover)",
    )
    p.add_argument(
        "--out", type=Path, default=default_out(), help="results folder (default: $OUT if set, else bench/results)"
    )
    p.add_argument(
        "--preset", default="notebook", help="the model measured: 'notebook' (the default model) or a shipped preset"
    )
    p.add_argument("--skip", default="", help=f"comma-separated parts to skip, of {','.join(PARTS)}")
    p.add_argument("--busy", action="store_true", help="record machine_busy: true")
    p.add_argument(
        "--cpu-plumbing",
        action="store_true",
        help="run every step on the CPU, smoke preset, tiny sizes (tests this script; numbers meaningless)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    args.data = str(Path(args.data).resolve()) if args.data else None  # the training subprocesses run elsewhere
    unknown = [s for s in args.skip if s not in PARTS]
    if unknown:
        parser.error(f"--skip: unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if args.cpu_plumbing and args.preset == "notebook":
        args.preset = "smoke"
    return args


def require_gpu() -> tuple[torch.device | None, str | None]:
    """cuda:0 if this torch can run on a visible GPU, else the reason there is nothing to check."""
    if not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return None, (
            f"gpu_check: no CUDA GPU is visible (torch {torch.__version__}, {build}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). The GPU checks need one: "
            "run this on a GPU machine; `python bench/run.py --quick` measures the CPU."
        )
    device = torch.device("cuda", 0)
    try:
        check_gpu_supported(device)
    except UnsupportedGPUError as err:
        return None, f"gpu_check: {err}"
    return device, None


# ---------------------------------------------------------------- 1. environment


def environment(cfg: Config, device: torch.device) -> dict[str, Any]:
    from hmolqd.notebook import environment_report

    smi = shutil.which("nvidia-smi")
    smi_text = (
        subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout if smi else "nvidia-smi not found"
    )
    return {
        "report": environment_report(cfg.with_overrides(device=str(device))),
        "nvidia_smi": smi_text,
        "host": host_facts(device, sizes="gpu_check", busy=False),
    }


# ---------------------------------------------------------------- 2. autocast paths


def _stage_steps(gen: RoomModel, cfg: Config, stage: str, corpus: Any, rt: Runtime, steps: int) -> dict[str, Any]:
    """`steps` optimizer steps of one stage's objective through the trainer's `Optimization.step`."""
    dev, row = rt.device, stage_named(stage)
    set_train_mode(gen, row)
    data = stage_data(gen, row, corpus.rooms.to(dev), corpus.doors.to(dev), corpus.stairs.to(dev))
    if row.starts_denoiser:
        start_diffusion_stage(gen, data, corpus.rooms.to(dev))
    o = Optimization.create(trainable(gen, row), cfg.train, dev.type, rt.use_scaler)
    loss_module = objective(gen, row, cfg)
    schedule = LRSchedule.from_config(cfg.train, steps)
    g = torch.Generator().manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    losses, skipped = [], 0
    start = time.perf_counter()
    for i in range(steps):
        idx = torch.randint(len(data), (cfg.train.batch_size,), generator=g).to(dev)
        losses.append(o.step(loss_module, data.x[idx], data.cond[idx], schedule(i), rt.autocast).detach().float())
        # the fp16 GradScaler skipped it (inf/NaN gradients); a host read it already paid
        skipped += o.last_step_skipped
    loss = torch.stack(losses).cpu()  # (steps,): the one host sync
    seconds = time.perf_counter() - start
    k = max(1, steps // 5)
    first, last = float(loss[:k].mean()), float(loss[-k:].mean())
    finite = bool(torch.isfinite(loss).all())
    return {
        "steps": steps,
        "steps_per_s": steps / seconds,
        "loss_first": first,
        "loss_last": last,
        "finite": finite,
        "decreased": last < first,
        "ok": finite and last < first,
        "grad_scale": o.scaler.get_scale() if o.scaler.is_enabled() else None,
        "skipped_steps": skipped,
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }


def autocast_paths(ctx: Context, base: Config, steps: int) -> dict[str, Any]:
    cfg = base.with_overrides(warmup_steps=max(1, steps // 8))
    corpus = ctx.training_corpus(cfg)
    bf16 = torch.cuda.is_bf16_supported() if ctx.device.type == "cuda" else True
    # use_amp values
    paths: dict[str, bool | str] = {"fp32": False, "fp16": "fp16", **({"bf16": "bf16"} if bf16 else {})}
    measured: dict[str, dict[str, Any]] = {}
    for name, use_amp in paths.items():
        torch.manual_seed(0)
        gen = RoomModel.from_config(cfg).to(ctx.device)
        rt: Runtime = setup_runtime(str(ctx.device), use_amp=cfg.with_overrides(use_amp=use_amp).train.use_amp)
        if rt.amp_dtype != {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]:
            raise RuntimeError(f"use_amp={use_amp!r} gave the runtime AMP dtype {rt.amp_dtype} on {ctx.device}")
        measured[name] = {stage: _stage_steps(gen, cfg, stage, corpus, rt, steps) for stage in ("vqvae", "diffusion")}
        ctx.say(
            f"[gpu_check]   {name}: "
            + ", ".join(
                f"{s} loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, {r['steps_per_s']:.1f} steps/s"
                for s, r in measured[name].items()
            )
        )
    return {
        "trainer_picks": ctx.amp_name(True),
        "paths": measured,
        "ok": all(r["ok"] for p in measured.values() for r in p.values()),
        "skipped": None if bf16 else "bf16: this GPU has no bf16 support (torch.cuda.is_bf16_supported() is False)",
    }


# ---------------------------------------------------------------- 3. SIGKILL and resume


def comparable(checkpoint_dir: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint_dir / LATEST)
    return {
        **{k: v for k, v in ckpt.items() if k not in (*RUN_SPECIFIC, "config")},
        "config": {k: v for k, v in ckpt["config"].items() if k != "paths"},
    }


def launch(cfg: Config, root: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`python -m hmolqd train --config <json>` in a new process (its output in <name>.log)."""
    path = root / f"{name}.json"
    path.write_text(cfg.to_json(), encoding="utf-8")
    log = root / f"{name}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("a", encoding="utf-8") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hmolqd", "train", "--config", str(path)],
            cwd=REPO,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def run_to_end(cfg: Config, root: Path, name: str, timeout: float) -> float:
    start = time.perf_counter()
    proc, log = launch(cfg, root, name)
    if proc.wait(timeout=timeout) != 0:
        raise RuntimeError(
            f"{name}: train exited {proc.returncode}; end of its log:\n{log.read_text(encoding='utf-8')[-2000:]}"
        )
    return time.perf_counter() - start


def kill_and_resume(
    ctx: Context, base: Config, epochs: tuple[int, int], step_every: int, kill_delay: float
) -> dict[str, Any]:
    """One SIGKILL-and-resume check per mixed-precision dtype: use_amp "fp16" (with its GradScaler, forced even where
    bf16 is native), then "bf16" where the device has it."""
    bf16 = torch.cuda.is_bf16_supported() if ctx.device.type == "cuda" else True
    runs = {
        amp: kill_and_resume_one(ctx, base, amp, epochs, step_every, kill_delay)
        for amp in ("fp16", "bf16")[: 2 if bf16 else 1]
    }
    return {
        "ok": all(r["ok"] for r in runs.values()),
        "runs": runs,
        "skipped": None if bf16 else "bf16: this GPU has no bf16 support (torch.cuda.is_bf16_supported() is False)",
    }


def kill_and_resume_one(
    ctx: Context,
    base: Config,
    amp: str,
    epochs: tuple[int, int],
    step_every: int,
    kill_delay: float,
    timeout: float = 300,
) -> dict[str, Any]:
    root = ctx.workdir / f"kill_resume_{amp}"
    root.mkdir(parents=True, exist_ok=True)

    def cfg(name: str) -> Config:
        return ctx.config(
            base,
            f"{name}_{amp}",
            vqvae_epochs=epochs[0],
            num_epochs=epochs[1],
            joint_epochs=0,
            sample_every=0,
            sample_steps=2,
            checkpoint_every_steps=step_every,
            auto_resume=True,
            use_amp=amp,
            name="kill_resume",
        )  # one run name: equal configs

    times = {name: run_to_end(cfg(name), root, name, timeout) for name in ("reference", "reference_again")}
    victim = cfg("killed")
    ckpt_dir = Path(victim.paths.checkpoint_dir)
    proc, log = launch(victim, root, "killed")
    start = time.monotonic()
    while proc.poll() is None and not any(ckpt_dir.glob(DIFFUSION_STEP_GLOB)) and time.monotonic() - start < timeout:
        time.sleep(0.01)
    time.sleep(kill_delay)
    if proc.poll() is not None:
        raise RuntimeError(
            f"the run to kill ended (exit {proc.returncode}) before it could be killed; end of its log:\n"
            f"{log.read_text(encoding='utf-8')[-2000:]}"
        )
    killed_at = sorted(p.name for p in ckpt_dir.glob("checkpoint_*.pt"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    times["resumed"] = run_to_end(victim, root, "killed", timeout)
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
        "epochs": list(epochs),
        "checkpoint_every_steps": step_every,
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
        "seconds": times,
    }


# ---------------------------------------------------------------- all of it


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# gpu_check: {results['device']}", "", f"{results['date']}; parts: {', '.join(results['parts'])}.", ""]
    for part in PARTS:
        r = results["results"].get(part)
        if part in results["errors"]:
            lines += [f"## {part}: FAILED", "", "```", results["errors"][part][-1500:], "```", ""]
        elif part == "env" and r:
            lines += ["## environment", "", "```", r["report"], "```", ""]
        elif part == "autocast" and r:
            lines += [
                "## autocast paths",
                "",
                "| path | stage | loss first -> last | skipped steps | steps/s | CUDA max MiB | ok |",
                "|---|---|---|---|---|---|---|",
            ]
            for name, stages in r["paths"].items():
                for stage, m in stages.items():
                    mem = "n/a" if m["cuda_max_allocated_mib"] is None else f"{m['cuda_max_allocated_mib']:.0f}"
                    lines.append(
                        f"| {name} | {stage} | {m['loss_first']:.4f} -> {m['loss_last']:.4f} | {m['skipped_steps']} | "
                        f"{m['steps_per_s']:.1f} | {mem} | {m['ok']} |"
                    )
            lines += [
                "",
                f"The trainer picks AMP {r['trainer_picks']} on this device."
                + (f" Skipped: {r['skipped']}." if r["skipped"] else ""),
                "",
            ]
        elif part == "resume" and r:
            lines += ["## SIGKILL and resume", ""]
            for amp, k in r["runs"].items():
                lines += [
                    f"- use_amp={amp!r}: {'PASS' if k['ok'] else 'FAIL'}: killed with files {k['files_when_killed']}; "
                    f"resumed vs uninterrupted max |diff| {k['max_abs_diff']:.3g} over {k['tensors_compared']} "
                    "tensors, "
                    f"run-to-run noise {k['run_to_run_noise']:.3g} (tolerance 10x: {k['tolerance']:.3g}); "
                    f"GradScaler steps skipped: {k['skipped_steps']}."
                ]
            lines += [""] + ([f"Skipped: {r['skipped']}.", ""] if r["skipped"] else [])
        elif part == "suite" and r:
            lines += ["## suite", "", f"See [{r['markdown']}]({r['markdown']}).", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_plumbing:
        device, sizes = torch.device("cpu"), TINY
    else:
        device, problem = require_gpu()
        if device is None:
            print(problem, file=sys.stderr)
            return 2
        sizes = GPU
    say: Callable[[str], None] = print
    args.out.mkdir(parents=True, exist_ok=True)
    parts = tuple(p for p in PARTS if p not in args.skip)
    results: dict[str, Any] = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_plumbing": args.cpu_plumbing,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "parts": parts,
        "results": {},
        "errors": {},
        "seconds": {},
    }
    base = base_config(args.preset)
    if args.cpu_plumbing:  # 7 steps per epoch: CPU fp16 / bf16 autocast is several times slower than fp32
        base = base.with_overrides(mirror_augment=False, door_augment=0)
    with tempfile.TemporaryDirectory(prefix="hmolqd_gpu_check_") as tmp:
        ctx = Context(Path(tmp), device, args.data, sizes, say)
        steps = {
            "env": lambda: environment(base, device),
            "autocast": lambda: autocast_paths(ctx, base, steps=8 if args.cpu_plumbing else 60),
            "resume": lambda: kill_and_resume(
                ctx,
                base,
                epochs=(1, 1) if args.cpu_plumbing else (1, 4),
                step_every=2 if args.cpu_plumbing else 7,
                kill_delay=0.0 if args.cpu_plumbing else 0.2,
            ),
            "suite": lambda: _suite(args, device, sizes, say),
        }
        for part in parts:
            say(f"[gpu_check] {part} ...")
            start = time.perf_counter()
            try:
                results["results"][part] = steps[part]()
            except Exception:  # recorded, reported and in the exit status; the other parts still run
                results["errors"][part] = traceback.format_exc()
                say(results["errors"][part])
            results["seconds"][part] = round(time.perf_counter() - start, 1)
            say(
                f"[gpu_check] {part}: {'FAILED' if part in results['errors'] else 'done'} "
                f"({results['seconds'][part]:.0f} s)"
            )
            atomic_write_text(args.out / "gpu_check.json", json.dumps(json_safe(results), indent=1, default=str) + "\n")
            atomic_write_text(args.out / "gpu_check.md", markdown(results))
    failed = list(results["errors"]) + [
        p for p in ("autocast", "resume") if p in results["results"] and not results["results"][p]["ok"]
    ]
    say(
        f"[gpu_check] wrote {args.out / 'gpu_check.json'}; "
        + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed")
    )
    return 1 if failed else 0


def _suite(args: argparse.Namespace, device: torch.device, sizes: Any, say: Callable[[str], None]) -> dict[str, Any]:
    path, results = run_suite(
        preset=args.preset, sizes=sizes, device=device, out_dir=args.out, data_dir=args.data, busy=args.busy, say=say
    )
    if results["errors"]:
        raise RuntimeError(f"suite sections failed: {results['errors']}")
    return {"json": path.name, "markdown": path.with_suffix(".md").name}


if __name__ == "__main__":
    sys.exit(main())

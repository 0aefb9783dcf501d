"""The one prepared GPU script of issue 29: what a GPU session measures, sized to end within 8 minutes on an H200.

    PYTHONUNBUFFERED=1 python bench/gpu_check.py [--data DIR] [--out DIR] [--parts ...] [--budget-s 450]

Parts, in this order (the most wanted first; `--parts` picks and orders them):

1. env: hmolqd's notebook environment report, torch / CUDA / GPU facts, nvidia-smi.
2. steps: the trainer's own training step (`Optimization.step`, and the EMA update after a denoiser step) of each
   preset of `--presets` (cpu, gpu) under fp32 (TF32 matmuls allowed), bf16 autocast and fp16 autocast +
   GradScaler, per stage: warm-up excluded, `torch.cuda.synchronize()` around each timed block, median steps/s of
   several blocks and their range, losses finite and falling, host syncs left in a step (`hbench/stepbench.py`),
   so that `use_amp` can be set from measurement.
3. train: `python -m hmolqd train` of the default model (the notebook's CONFIG) from scratch, wall time, each
   stage's epochs timed from its log lines, the size of model_final.pt (`hbench/gpuruns.py`).
4. generate: `hmolqd.generate` rooms/s of that model at n = 1,000 and 10,000 (`--generate-n`).
5. illuminate: wall time of `python -m hmolqd illuminate --model M --evaluations 2000 --out DIR`, at most
   `--illuminate-max-s`; a run cut there reports how many evaluations it made per second.
6. resume: SIGKILL and resume of `python -m hmolqd train` per mixed-precision dtype, bf16 first, then fp16 with its
   GradScaler, against two uninterrupted runs within 10x their run-to-run noise (`hbench/killresume.py`).
7. suite: `bench/run.py`'s suite on CUDA with the `gpu` sizes (a time-to-quality run of 30 + 150 epochs among
   others; it starts only with 360 s of the budget left, so it runs alone: `--parts suite`).

Parts 2-5 and the concurrent runs of part 6 have not yet run on a GPU; the last GPU run (H200, 2026-12-04, the
script before this one) is bench/results/gpu_h200-2026-12-04.md.

The time budget (`--budget-s`, default 450 s, so that the whole command stays under 8 minutes) is shared in part
order: a part starts only with its minimum time left (else "skipped: time budget"), and a part that runs
commands kills them at the budget's end ("cut short: time budget", with what was measured until then).

Writes gpu_<name>.json and gpu_<name>.md (name: `--name`, default <gpu>-<date>, e.g. h200-2026-12-05), and the
suite's <gpu>.json / .md / -quality.png, under $OUT when set, else bench/results; both files are rewritten after
every part, so a run cut short keeps what it measured.
Exit status: 2 when no usable GPU is visible (nothing runs), 1 when a check failed, 0 otherwise.
`--cpu-plumbing` runs every part on the CPU with the smoke preset and tiny sizes in a minute or two: it tests this
script where there is no GPU, and its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from hbench import gpuruns  # noqa: E402
from hbench.gpureport import markdown  # noqa: E402
from hbench.host import REPO, host_facts, slug  # noqa: E402
from hbench.killresume import ResumePlan, kill_and_resume  # noqa: E402
from hbench.sizes import GPU, TINY  # noqa: E402
from hbench.stepbench import PRECISIONS, StepSizes, step_speed  # noqa: E402
from hbench.suite import Context, base_config, run_suite  # noqa: E402

from hmolqd.atomic import atomic_write_text  # noqa: E402
from hmolqd.config import Config  # noqa: E402
from hmolqd.evaluation.report import json_safe  # noqa: E402
from hmolqd.training.runtime import UnsupportedGPUError, check_gpu_supported  # noqa: E402

PARTS = ("env", "steps", "train", "generate", "illuminate", "resume", "suite")
# Seconds of budget a part needs left to start on an H200 (the CPU plumbing run starts every part).
MIN_S = {"env": 10, "steps": 30, "train": 60, "generate": 10, "illuminate": 30, "resume": 45, "suite": 360}
TIME_BUDGET = "skipped: time budget"


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"


def _list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser() -> argparse.ArgumentParser:
    from run import default_data_dir  # bench/run.py, beside this file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=default_data_dir(), help="VGLC Zelda folder (default: as bench/run.py finds it)")
    p.add_argument("--out", type=Path, default=default_out(), help="results folder ($OUT if set, else bench/results)")
    p.add_argument("--name", default=None, help="result files gpu_<name>.json / .md (default: <gpu>-<date>)")
    p.add_argument("--preset", default="notebook", help="the model trained, sampled, illuminated and resumed")
    p.add_argument("--presets", default="cpu,gpu", help="presets whose training step is timed (part steps)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="of fp32, bf16, fp16 (part steps)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"parts to run, in this order, of {','.join(PARTS)}")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out of --parts")
    p.add_argument("--budget-s", type=float, default=None, help="time budget of all parts (default 450; plumbing 900)")
    p.add_argument("--steps-max-s", type=float, default=120.0, help="at most this long for part steps")
    p.add_argument("--illuminate-max-s", type=float, default=150.0, help="at most this long for part illuminate")
    p.add_argument("--evaluations", type=int, default=None, help="illuminate evaluations (default 2000; plumbing 4)")
    p.add_argument("--generate-n", default=None, help="rooms per generate call (default 1000,10000; plumbing 64,128)")
    p.add_argument("--model", type=Path, default=None, help="model_final.pt for generate / illuminate without train")
    p.add_argument("--busy", action="store_true", help="record machine_busy: true")
    p.add_argument("--cpu-plumbing", action="store_true", help="every part on the CPU, smoke preset, tiny sizes")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    skip, chosen = _list(args.skip), _list(args.parts)
    unknown = [s for s in (*skip, *chosen) if s not in PARTS]
    if unknown:
        parser.error(f"--parts / --skip: unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    bad = [s for s in _list(args.precisions) if s not in PRECISIONS]
    if bad:
        parser.error(f"--precisions: unknown {bad}; choose from {','.join(PRECISIONS)}")
    args.parts, args.skip = tuple(p for p in chosen if p not in skip), skip
    args.precisions = _list(args.precisions)
    args.data = str(Path(args.data).resolve()) if args.data else None  # the training subprocesses run elsewhere
    args.model = args.model.resolve() if args.model else None  # so is illuminate
    plumbing = args.cpu_plumbing
    if plumbing and args.preset == "notebook":
        args.preset = "smoke"
    args.presets = ("smoke",) if plumbing and args.presets == "cpu,gpu" else _list(args.presets)
    args.budget_s = args.budget_s if args.budget_s is not None else 900.0 if plumbing else 450.0
    args.evaluations = args.evaluations or (4 if plumbing else 2000)
    args.generate_n = tuple(int(n) for n in _list(args.generate_n or ("64,128" if plumbing else "1000,10000")))
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


def run_name(args: argparse.Namespace, device: torch.device) -> str:
    if args.name:
        return args.name
    if device.type != "cuda":
        return "cpu-plumbing"
    gpu = slug(torch.cuda.get_device_name(device)).removeprefix("nvidia-")
    return f"{gpu}-{time.strftime('%Y-%m-%d')}"


def environment(cfg: Config, device: torch.device) -> dict[str, Any]:
    from hmolqd.notebook import environment_report

    smi = shutil.which("nvidia-smi")
    smi_text = (
        subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout if smi else "nvidia-smi not found"
    )
    return {"report": environment_report(cfg.with_overrides(device=str(device))), "nvidia_smi": smi_text}


class Skipped(Exception):
    """A part that cannot run here, and why (not a failure)."""


class Session:
    """One run of the parts: their shared state (the trained model) and the callables that run them."""

    def __init__(self, args: argparse.Namespace, ctx: Context, base: Config, budget: gpuruns.Budget) -> None:
        self.args, self.ctx, self.base, self.budget = args, ctx, base, budget
        self.model: Path | None = args.model

    def need_model(self) -> Path:
        if self.model is None:
            raise Skipped("skipped: no model (the train part did not run to its end here; --model names one)")
        return self.model

    def run(self, part: str) -> dict[str, Any]:
        a, ctx, plumbing = self.args, self.ctx, self.args.cpu_plumbing
        if part == "env":
            return environment(self.base, ctx.device)
        if part == "steps":
            sizes = StepSizes(warmup=1, steps=3, repeats=2) if plumbing else StepSizes(warmup=10, steps=30, repeats=5)
            return step_speed(ctx, a.presets, a.precisions, sizes, self.budget.deadline(a.steps_max_s))
        if part == "train":
            label = "the notebook's CONFIG" if a.preset in ("notebook", "default") else f"the {a.preset} preset"
            result = gpuruns.train_end_to_end(ctx, self.base, label, self.budget.deadline())
            model = result.pop("model")  # in this run's temporary folder: kept for the next parts, not recorded
            self.model = Path(model) if model else self.model
            return result
        if part == "generate":
            return gpuruns.generation_speed(self.need_model(), ctx.device, a.generate_n, self.budget.deadline())
        if part == "illuminate":
            deadline = self.budget.deadline(a.illuminate_max_s)
            batch = 2 if plumbing else 50  # 50: the CLI's default
            return gpuruns.illuminate_run(self.need_model(), ctx.workdir, a.evaluations, batch, deadline)
        if part == "resume":
            plan = (
                ResumePlan(epochs=(1, 1), step_every=2, kill_delay=0.0, min_s=0.0)
                if plumbing
                else ResumePlan(epochs=(1, 3), step_every=7, kill_delay=0.2, min_s=MIN_S["resume"])
            )
            return kill_and_resume(ctx, self.base, plan, self.budget.deadline())
        return _suite(a, ctx.device, TINY if plumbing else GPU, ctx.say)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_plumbing:
        device: torch.device | None = torch.device("cpu")
    else:
        device, problem = require_gpu()
        if device is None:
            print(problem, file=sys.stderr)
            return 2
    say: Callable[[str], None] = print
    budget = gpuruns.Budget(args.budget_s)
    name = run_name(args, device)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = (args.out / f"gpu_{name}.json", args.out / f"gpu_{name}.md")
    results: dict[str, Any] = {
        "name": name,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_plumbing": args.cpu_plumbing,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python bench/gpu_check.py " + " ".join(args.argv),
        "host": host_facts(device, sizes="gpu_check", busy=args.busy),
        "budget_s": args.budget_s,
        "parts": args.parts,
        "results": {},
        "skipped": {},
        "errors": {},
        "seconds": {},
    }
    base = base_config(args.preset)
    if args.cpu_plumbing:  # 7 steps per epoch: CPU fp16 / bf16 autocast is several times slower than fp32
        base = base.with_overrides(mirror_augment=False, door_augment=0)
    with tempfile.TemporaryDirectory(prefix="hmolqd_gpu_check_") as tmp:
        session = Session(args, Context(Path(tmp), device, args.data, GPU, say), base, budget)
        for part in args.parts:
            need = 0 if args.cpu_plumbing else MIN_S[part]
            if budget.left() <= need:
                results["skipped"][part] = f"{TIME_BUDGET} ({budget.left():.0f} s left, it needs about {need} s)"
                say(f"[gpu_check] {part}: {results['skipped'][part]}")
            else:
                run_part(session, part, results, say)
            results["elapsed_s"] = round(budget.total_s - budget.left(), 1)
            atomic_write_text(paths[0], json.dumps(json_safe(results), indent=1, default=str) + "\n")
            atomic_write_text(paths[1], markdown(results))
    failed = list(results["errors"]) + [p for p, r in results["results"].items() if r.get("ok") is False]
    say(f"[gpu_check] wrote {paths[0]}; " + (f"FAILED: {', '.join(failed)}" if failed else "no check failed"))
    return 1 if failed else 0


def run_part(session: Session, part: str, results: dict[str, Any], say: Callable[[str], None]) -> None:
    say(f"[gpu_check] {part} ...")
    start = time.perf_counter()
    try:
        results["results"][part] = result = session.run(part)
        if result.get("cut_short"):
            results["skipped"][part] = result["cut_short"]
    except Skipped as why:
        results["skipped"][part] = str(why)
        say(f"[gpu_check] {part}: {why}")
    except Exception:  # recorded, reported and in the exit status; the other parts still run
        results["errors"][part] = traceback.format_exc()
        say(results["errors"][part])
    results["seconds"][part] = round(time.perf_counter() - start, 1)
    say(f"[gpu_check] {part}: {'FAILED' if part in results['errors'] else 'done'} ({results['seconds'][part]:.0f} s)")


def _suite(args: argparse.Namespace, device: torch.device, sizes: Any, say: Callable[[str], None]) -> dict[str, Any]:
    path, results = run_suite(
        preset=args.preset, sizes=sizes, device=device, out_dir=args.out, data_dir=args.data, busy=args.busy, say=say
    )
    if results["errors"]:
        raise RuntimeError(f"suite sections failed: {results['errors']}")
    return {"json": path.name, "markdown": path.with_suffix(".md").name}


if __name__ == "__main__":
    sys.exit(main())

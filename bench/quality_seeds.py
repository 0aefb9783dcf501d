"""Room-model quality over several training seeds: train a preset per seed, evaluate each model, report mean and range.

Each seed runs `python -m hmolqd train --preset P --set seed=S` and then `python -m hmolqd evaluate` (1,000 rooms,
sampling seed 0, door requests drawn from the training rooms) in its own folder, with `OMP_NUM_THREADS=1`, so the
wall time of one training is what "one CPU thread" costs. `--jobs 2` runs two seeds side by side (one thread each);
time the budget with `--jobs 1` on an otherwise idle machine. Writes `<out>.json` (every report, the wall times) and
`<out>.md` (the targets table: mean, min-max over seeds, beside the training set and the Markov reference of the
first seed's report).

    python bench/quality_seeds.py --preset cpu --seeds 0 1 2 --data ../shared/data/vglc-zelda \
        --out bench/results/quality_cpu

`--reuse` evaluates the models a previous call trained in `--work` again (its training wall time is kept in
`train_seconds.txt` beside each), e.g. with other sampling settings: `--evaluate-arg=--guidance --evaluate-arg=1.5`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# (metric key in the report, direction, target) from the room-model issue; None = reported, no target.
# The cpu preset's targets (issue 21): 2 x 2 pattern KL both ways, interior novelty beside whole-room novelty.
TARGETS: tuple[tuple[str, str, float | None], ...] = (
    ("playable", ">=", 0.90),
    ("novel_playable", ">=", 0.80),
    ("novel_interior", ">=", 0.85),
    ("novel_playable_symmetric", ">=", 0.60),
    ("symmetric", ">=", 0.80),
    ("distinct", ">=", 0.95),
    ("diversity", ">=", 0.22),
    ("door_adherence", ">=", 0.99),
    ("tile_kl_train_gen", "<=", 0.01),
    ("pattern_kl_train_gen", "<=", 0.06),
    ("pattern_kl_gen_train", "<=", 0.20),
    ("unseen_patterns", None, None),
    ("novel", None, None),
)


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # every train / evaluate runs on one CPU thread


def run_seed(
    preset: str,
    seed: int,
    data: Path,
    root: Path,
    samples: int,
    extra: list[str],
    reuse: bool = False,
    evaluate_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train (unless `reuse` finds the model) and evaluate one seed in `root/seed<S>`; returns the evaluate report
    plus the wall times."""
    folder = root / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    if reuse:
        return _evaluate(folder, seed, data, samples, evaluate_args, float((folder / "train_seconds.txt").read_text()))
    sets = [
        "--set",
        f"seed={seed}",
        "--set",
        f"data_dir={data}",
        "--set",
        f"name=seed{seed}",
        "--set",
        f"checkpoint_dir={folder / 'ckpt'}",
        "--set",
        f"output_dir={folder / 'out'}",
    ]
    for item in extra:
        sets += ["--set", item]
    with open(folder / "train.log", "w") as log:
        start = time.perf_counter()
        code = subprocess.run(
            [sys.executable, "-m", "hmolqd", "train", "--preset", preset, *sets],
            env={**os.environ, **ONE_THREAD},
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
        train_seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"seed {seed}: training exited with {code}; see {folder / 'train.log'}")
    (folder / "train_seconds.txt").write_text(f"{train_seconds}\n")
    return _evaluate(folder, seed, data, samples, evaluate_args, train_seconds)


def evaluate_model(
    model: Path, folder: Path, data: Path, samples: int, extra: Sequence[str] = (), label: str = ""
) -> dict[str, Any]:
    """`python -m hmolqd evaluate` of `model` on one thread, sampling seed 0, its report and sample picture written
    into `folder`; returns the report. `extra`: more evaluate arguments; `label` names the run in an error."""
    report = folder / "evaluation_report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hmolqd",
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(data),
            "--samples",
            str(samples),
            "--seed",
            "0",
            "--device",
            "cpu",
            "--json",
            str(report),
            "--png",
            str(folder / "evaluation_samples.png"),
            *extra,
        ],
        env={**os.environ, **ONE_THREAD},
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{label or folder}: evaluate exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(report.read_text())


def _evaluate(
    folder: Path, seed: int, data: Path, samples: int, evaluate_args: tuple[str, ...], train_seconds: float
) -> dict[str, Any]:
    start = time.perf_counter()
    report = evaluate_model(folder / "out" / "model_final.pt", folder, data, samples, evaluate_args, f"seed {seed}")
    report["wall"] = {"train_seconds": train_seconds, "evaluate_seconds": time.perf_counter() - start}
    return report


def summary(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, min and max over seeds of every numeric model metric, the rooms/s and the training wall time."""
    rows: dict[str, list[float]] = {}
    for r in reports:
        values = {k: v for k, v in r["model"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values["rooms_per_second"] = r["timing"]["rooms_per_second"]
        values["train_minutes"] = r["wall"]["train_seconds"] / 60
        for key, value in values.items():
            rows.setdefault(key, []).append(float(value))
    return {k: {"mean": statistics.fmean(v), "min": min(v), "max": max(v), "n": len(v)} for k, v in rows.items()}


def markdown(reports: list[dict[str, Any]], stats: dict[str, dict[str, float]], seeds: list[int]) -> str:
    first = reports[0]
    lines = [
        f"| metric | ours: mean over seeds {', '.join(map(str, seeds))} | range | training set | Markov | held-out "
        "real | target "
        "| met (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|:--:|",
    ]
    for key, op, target in TARGETS:
        if key not in stats:
            continue
        s = stats[key]
        met = (
            "" if target is None else ("yes" if (s["mean"] >= target if op == ">=" else s["mean"] <= target) else "no")
        )
        cells = [
            f"{s['mean']:.3f}",
            f"{s['min']:.3f}-{s['max']:.3f}",
            _fmt(first["training_set"].get(key)),
            _fmt(first["markov"].get(key)),
            _fmt(first.get("held_out", {}).get(key)),
            "" if target is None else f"{op} {target}",
            met,
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for key, label in (
        ("rooms_per_second", "rooms/s in evaluate (1 thread, batch of the model's default)"),
        ("train_minutes", "training wall minutes (1 thread)"),
    ):
        s = stats[key]
        lines.append(f"| {label} | {s['mean']:.2f} | {s['min']:.2f}-{s['max']:.2f} | | | | | |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "vglc-zelda")
    parser.add_argument(
        "--work", type=Path, default=Path("runs/quality_seeds"), help="folder for the runs (not committed)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "quality_cpu", help="writes OUT.json and OUT.md"
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained side by side, one thread each")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra config key for every seed"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate the models already trained in --work (no training)"
    )
    parser.add_argument(
        "--evaluate-arg", action="append", default=[], help="extra argument for `hmolqd evaluate` (repeatable)"
    )
    args = parser.parse_args(argv)

    root = args.work.resolve()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        reports = list(
            pool.map(
                lambda s: run_seed(
                    args.preset,
                    s,
                    args.data.resolve(),
                    root,
                    args.samples,
                    args.set,
                    args.reuse,
                    tuple(args.evaluate_arg),
                ),
                args.seeds,
            )
        )
    stats = summary(reports)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "preset": args.preset,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "extra": args.set,
        "evaluate_args": args.evaluate_arg,
        "summary": stats,
        "reports": reports,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(reports, stats, args.seeds)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

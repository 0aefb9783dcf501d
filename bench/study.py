"""The fidelity-novelty study: train config variants side by side, score each on 1,000 rooms, write one table and
the frontier picture. Resumable: a re-run after a kill skips every point whose result is saved, and a training that
was cut off resumes from its own checkpoint (`python -m hmolqd train` resumes by itself).

A plan is a JSON file:

    {"preset": "cpu",
     "tokenizer": "runs/base0/outputs/model_final.pt",
     "points": [
       {"name": "base", "seeds": [0]},
       {"name": "recombine1", "set": {"recombine_augment": 1, "num_epochs": 75}},
       {"name": "base_t1.0", "model_of": "base", "sample": {"temperature": 1.0}}
     ]}

- `set`: config keys of the training, on top of the preset and of the plan's own `set` (keys every point shares).
  With `tokenizer`, a point reuses that model's VQ-VAE (`vqvae_from`, `vqvae_epochs=0`) unless it says
  `"own_tokenizer": true`: the VQ-VAE stage is about a sixth of a `cpu` training and its codes are the same for
  every denoiser variant.
- `model_of`: no training; the named point's models (seed for seed) sampled with `sample`'s settings (the flags of
  `hmolqd evaluate`: steps, guidance, temperature, sampler, copy-guard, pattern-guard, request-guard, guard-draws,
  ask-playable).
- `seeds`: training seeds (default [0]).

Every training and evaluation runs with one thread (`OMP_NUM_THREADS=1`); `--jobs 2` trains two points at once.
Each point and seed is evaluated by `python -m hmolqd evaluate` on `--samples` rooms, sampling seed 0.

    python bench/study.py --plan bench/study_plan.json --work runs/study --jobs 2 --out bench/results/study
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quality_seeds import ONE_THREAD, evaluate_model  # bench/ beside this script

from hmolqd.atomic import atomic_write_text
from hmolqd.checkpointing.verify import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
# (report key, column header, format) of the table: fidelity, novelty, the other room bars, cost.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("pattern_kl_train_gen", "2x2 KL train‖gen", ".3f"),
    ("pattern_kl_gen_train", "2x2 KL gen‖train", ".3f"),
    ("unseen_patterns", "unseen 2x2", ".4f"),
    ("novel_interior", "novel interior", ".3f"),
    ("interior_distance", "median interior dist.", ".1f"),
    ("interior_far", "interior >= 3", ".3f"),
    ("playable", "playable", ".3f"),
    ("novel_playable", "novel & playable", ".3f"),
    ("distinct", "distinct", ".3f"),
    ("diversity", "diversity", ".3f"),
    ("door_adherence", "doors", ".3f"),
    ("redraw_rate", "redrawn", ".3f"),
    ("rooms_per_second", "rooms/s", ".0f"),
    ("train_minutes", "train min", ".1f"),
)
SAMPLE_FLAGS = (
    "steps",
    "guidance",
    "temperature",
    "sampler",
    "copy-guard",
    "pattern-guard",
    "request-guard",
    "guard-draws",
    "ask-playable",
    "sample-dtype",
)  # `sample` keys -> evaluate's --flags


class PlanError(ValueError):
    """A plan that cannot run; the message names the point and key."""


def load_plan(path: Path) -> dict[str, Any]:
    try:
        plan = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PlanError(f"{path}: not a readable JSON plan: {err}") from err
    unknown = set(plan) - {"preset", "tokenizer", "set", "points", "note"}
    if unknown:
        raise PlanError(f"{path}: unknown key(s) {sorted(unknown)}; a plan has preset, tokenizer, set, points, note")
    names = [p.get("name") for p in plan.get("points", [])]
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise PlanError(f"{path}: 'points' must be a non-empty list of points with distinct names")
    for point in plan["points"]:
        unknown = set(point) - {"name", "set", "seeds", "model_of", "sample", "own_tokenizer", "note"}
        if unknown:
            raise PlanError(f"{path}: point {point['name']!r} has unknown key(s) {sorted(unknown)}")
        if point.get("model_of") and point["model_of"] not in names:
            raise PlanError(f"{path}: point {point['name']!r}: model_of {point['model_of']!r} is no point's name")
        bad = set(point.get("sample", {})) - set(SAMPLE_FLAGS)
        if bad:
            raise PlanError(f"{path}: point {point['name']!r}: sample keys {sorted(bad)}; known: {SAMPLE_FLAGS}")
    return plan


def point_seeds(plan: dict[str, Any], point: dict[str, Any]) -> list[int]:
    if point.get("model_of"):
        return point_seeds(plan, next(p for p in plan["points"] if p["name"] == point["model_of"]))
    return list(point.get("seeds", [0]))


def train_point(plan: dict[str, Any], point: dict[str, Any], seed: int, work: Path, data: Path) -> Path:
    """Train (or resume) one point's seed in `work/<name>/seed<S>`; returns its model_final.pt. The training time
    reported is the run's own clock (`elapsed` in its last checkpoint: every part of a resumed run, start-up
    included, without the work a kill lost)."""
    folder = work / point["name"] / f"seed{seed}"
    model = folder / "out" / "model_final.pt"
    if model.exists():
        return model
    folder.mkdir(parents=True, exist_ok=True)
    keys = {
        "seed": seed,
        "data_dir": str(data),
        "checkpoint_dir": str(folder / "ckpt"),
        "output_dir": str(folder / "out"),
    }
    if plan.get("tokenizer") and not point.get("own_tokenizer"):
        keys |= {"vqvae_from": str(Path(plan["tokenizer"]).resolve()), "vqvae_epochs": 0}
    keys |= plan.get("set", {}) | point.get("set", {})
    sets = [arg for k, v in keys.items() for arg in ("--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]
    start = time.perf_counter()
    with open(folder / "train.log", "a") as log:
        code = subprocess.run(
            [sys.executable, "-m", "hmolqd", "train", "--preset", plan.get("preset", "cpu"), *sets],
            env={**os.environ, **ONE_THREAD},
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
    calls = folder / "train_calls.json"  # the wall time of every call of this harness (a killed one is lost)
    parts = json.loads(calls.read_text()) if calls.exists() else []
    atomic_write_text(calls, json.dumps([*parts, time.perf_counter() - start]))
    if code != 0 or not model.exists():
        raise RuntimeError(f"{point['name']} seed {seed}: training exited with {code}; see {folder / 'train.log'}")
    return model


def evaluate_point(point: dict[str, Any], seed: int, model: Path, work: Path, data: Path, samples: int) -> Path:
    """`hmolqd evaluate` of `model` with the point's sampling settings; the report lands in result.json."""
    folder = work / point["name"] / f"seed{seed}"
    result = folder / "result.json"
    if result.exists():
        return result
    folder.mkdir(parents=True, exist_ok=True)
    flags = [arg for k, v in point.get("sample", {}).items() for arg in (f"--{k}", str(v))]
    out = evaluate_model(model, folder, data, samples, ["--no-dungeons", *flags], f"{point['name']} seed {seed}")
    out["train_seconds"] = load_checkpoint(model.parent.parent / "ckpt" / "checkpoint_latest.pt")["elapsed"]
    atomic_write_text(result, json.dumps(out))  # a kill leaves either no result (evaluated again) or the whole one
    return result


def run_point(plan: dict[str, Any], point: dict[str, Any], seed: int, args: argparse.Namespace) -> None:
    if point.get("model_of"):
        model = args.work / point["model_of"] / f"seed{seed}" / "out" / "model_final.pt"
    else:
        model = train_point(plan, point, seed, args.work, args.data)
    evaluate_point(point, seed, model, args.work, args.data, args.samples)
    print(f"done: {point['name']} seed {seed}", flush=True)


def row_values(report: dict[str, Any]) -> dict[str, float | None]:
    model = report["model"]
    out = {key: model.get(key) for key, _, _ in COLUMNS}
    out["rooms_per_second"] = report.get("timing", {}).get("rooms_per_second")
    out["redraw_rate"] = report.get("timing", {}).get("redraw_rate")
    out["train_minutes"] = report["train_seconds"] / 60 if report.get("train_seconds") else None
    return out


def summarize(plan: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """One row per point with every seed's result: mean and (min, max) of each column."""
    rows = []
    for point in plan["points"]:
        seeds = point_seeds(plan, point)
        found = [work / point["name"] / f"seed{s}" / "result.json" for s in seeds]
        values = [row_values(json.loads(f.read_text())) for f in found if f.exists()]
        if not values:
            continue
        stats: dict[str, Any] = {}
        for key, _, _ in COLUMNS:
            xs = [v[key] for v in values if isinstance(v[key], (int, float))]
            stats[key] = {"mean": statistics.fmean(xs), "min": min(xs), "max": max(xs)} if xs else None
        rows.append(
            {
                "name": point["name"],
                "seeds": seeds[: len(values)],
                "set": point.get("set", {}),
                "model_of": point.get("model_of"),
                "sample": point.get("sample", {}),
                "stats": stats,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| point | seeds | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            s = row["stats"][key]
            if s is None:
                cells.append("")
            elif len(row["seeds"]) > 1:
                cells.append(f"{s['mean']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})")
            else:
                cells.append(f"{s['mean']:{fmt}}")
        lines.append(f"| {row['name']} | {','.join(map(str, row['seeds']))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frontier_png(rows: list[dict[str, Any]], path: Path, held_out: dict[str, float] | None) -> None:
    """Fidelity (2x2 KL gen‖train, lower is better) against novelty (share of rooms with an interior no training
    room has), a dot per point; the bars of the room-quality goal as dashed lines, the held-out real dungeons'
    fidelity as a level. (The median interior distance, the other novelty bar, takes few integer values: it is in
    the table.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 7), dpi=120)
    labelled: list[tuple[float, float]] = []
    for row in rows:
        x, y = row["stats"]["novel_interior"], row["stats"]["pattern_kl_gen_train"]
        if x is None or y is None:
            continue
        trained = not row["model_of"]
        ax.errorbar(
            x["mean"],
            y["mean"],
            xerr=[[x["mean"] - x["min"]], [x["max"] - x["mean"]]],
            yerr=[[y["mean"] - y["min"]], [y["max"] - y["mean"]]],
            fmt="o" if trained else "s",
            color="tab:blue" if trained else "tab:orange",
            ms=6,
            capsize=3,
        )
        near = any(abs(x["mean"] - lx) < 0.03 and abs(y["mean"] - ly) < 0.012 for lx, ly in labelled)
        if trained or not near:  # a sampling point beside a labelled one stays unnamed here (the table names it)
            ax.annotate(row["name"], (x["mean"], y["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
            labelled.append((x["mean"], y["mean"]))
    if held_out:  # real rooms reuse interiors (novel interior ~0.02): their fidelity is drawn as a level
        ax.axhline(
            held_out["pattern_kl_gen_train"],
            ls="-.",
            color="tab:green",
            lw=1,
            label=f"held-out real dungeons: {held_out['pattern_kl_gen_train']:.3f}",
        )
    ax.axhline(0.20, ls="--", color="gray", lw=1, label="bar: KL gen‖train <= 0.20")
    ax.axvline(0.85, ls=":", color="gray", lw=1, label="bar: novel interior >= 0.85")
    ax.plot([], [], "o", color="tab:blue", label="trained point (mean, seed range)")
    ax.plot([], [], "s", color="tab:orange", label="sampling setting of a trained point")
    ax.set_xlabel("novelty: share of rooms whose interior no training room has  →  newer")
    ax.set_ylabel("2x2 pattern KL, generated ‖ training  (lower = more Zelda-like)")
    ax.set_title("Fidelity against novelty, 1,000 rooms per point (generate() settings unless named)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/study"), help="folder of the runs (not committed)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "vglc-zelda")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "study", help="OUT.md/.json/.png")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="points trained side by side, one thread each")
    parser.add_argument("--only", nargs="*", default=None, help="run only these points (the table has them all)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan)
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.work, args.data = args.work.resolve(), args.data.resolve()
    chosen = [p for p in plan["points"] if args.only is None or p["name"] in args.only]
    trained = [(p, s) for p in chosen if not p.get("model_of") for s in point_seeds(plan, p)]
    sampled = [(p, s) for p in chosen if p.get("model_of") for s in point_seeds(plan, p)]
    failures = []
    for batch in (trained, sampled):  # the sampling points need their trained models first
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_point, plan, p, s, args) for p, s in batch]
            for f in futures:
                try:
                    f.result()
                except RuntimeError as err:  # one failed point does not stop the others; it is listed at the end
                    failures.append(str(err))
    rows = summarize(plan, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    held = next((p for p in plan["points"] if not p.get("model_of")), None)
    held_out = None
    if held:
        first = args.work / held["name"] / f"seed{point_seeds(plan, held)[0]}" / "result.json"
        held_out = json.loads(first.read_text()).get("held_out") if first.exists() else None
    args.out.with_suffix(".json").write_text(json.dumps({"plan": plan, "rows": rows, "held_out": held_out}, indent=1))
    table = markdown(rows)
    args.out.with_suffix(".md").write_text(table)
    frontier_png(rows, args.out.with_suffix(".png"), held_out)
    print(table)
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 22 measurements: MAP-Elites against today's generator, solvable before repair, the real dungeons.

    OMP_NUM_THREADS=1 python bench/illuminate_bench.py --model runs/cpu/outputs/model_final.pt \\
        --data /path/to/vglc-zelda --part real --out bench/results/illuminate_real.json
    OMP_NUM_THREADS=1 python bench/illuminate_bench.py --model M --part archive --mode map-elites --seeds 0 1 2 \\
        --evaluations 2000 --runs runs/illuminate_bench --out bench/results/illuminate_map-elites.json

Parts (each writes its own JSON, so parts can run in separate processes and be merged by `--merge`):
- `real`: the 18 real dungeons played from their VGLC text maps + graphs (`hmolqd.dungeon.real`), and the
  18 real graphs built with the model x `--real-seeds` seeds: beaten by the player before any regeneration
  and after, rooms regenerated, wall time;
- `archive`: `--mode map-elites` (`hmolqd.illuminate`) or `baseline` (`sample_layout` from the 18 real
  templates, one dungeon per evaluation, the same archive) for each seed, with `--evaluations` dungeons:
  coverage, QD score, beaten elites, and over every evaluated dungeon beaten before / after regeneration,
  rooms regenerated and seconds. Each run checkpoints into `--runs/<mode>_<seed>` (a re-run resumes).
`--merge A.json B.json ...` prints the Markdown tables of finished parts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hmolqd.data import find_data_dir
from hmolqd.dungeon import DungeonConfig, build_dungeons, plan, read_layout
from hmolqd.dungeon.api import as_source
from hmolqd.dungeon.real import play_real_dungeons
from hmolqd.dungeon.source import PlainRoomSource


def part_real(source: Any, data_dir: Path, seeds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    plays = [p.to_json() for p in play_real_dungeons(data_dir)]
    real_s = time.perf_counter() - t0
    if seeds == 0:  # the real maps only
        return {"real_maps": plays, "real_maps_beaten": sum(p["beaten"] for p in plays), "real_maps_seconds": real_s}
    layouts = [read_layout(f) for f in sorted((data_dir / "Graph Processed").glob("*.dot"))]
    config = DungeonConfig()
    dungeons, t0 = [], time.perf_counter()
    for seed in range(seeds):
        dungeons += build_dungeons([plan(layout, config, seed=seed) for layout in layouts], source, config, seed=seed)
    build_s = time.perf_counter() - t0
    return {
        "real_maps": plays,
        "real_maps_beaten": sum(p["beaten"] for p in plays),
        "real_maps_seconds": real_s,
        "real_graphs_built": _counts(dungeons, build_s),
    }


def _counts(dungeons: list[Any], seconds: float) -> dict[str, Any]:
    rooms = sum(len(d.layout.rooms) for d in dungeons)
    return {
        "dungeons": len(dungeons),
        "rooms": rooms,
        "seconds": seconds,
        "beaten_before": sum(d.play_before.beaten for d in dungeons) / len(dungeons),
        "beaten": sum(d.play.beaten for d in dungeons) / len(dungeons),
        "rooms_regenerated": sum(int((d.generated > 1).sum()) for d in dungeons) / rooms,
        "not_beaten": [d.layout.name + ": " + d.play.stuck for d in dungeons if not d.play.beaten][:20],
    }


def part_archive(model: Any, mode: str, seeds: list[int], evaluations: int, runs: Path, batch: int) -> dict[str, Any]:
    from hmolqd.illuminate import illuminate

    out = {"mode": mode, "evaluations": evaluations, "runs": []}
    for seed in seeds:
        t0 = time.perf_counter()
        result = illuminate(
            model,
            evaluations=evaluations,
            out=runs / f"{mode}_{seed}",
            seed=seed,
            mode=mode,
            batch_size=batch,
            # seed bound as a default: the progress line names this loop's seed (B023)
            progress=lambda h, seed=seed: print(
                f"  {mode} seed {seed}: {h['evaluations']} evaluations, coverage {100 * h['coverage']:.1f} %",
                file=sys.stderr,
            ),
        )
        c = result.counts
        out["runs"].append(
            {
                "seed": seed,
                **result.stats,
                "wall_s_this_process": time.perf_counter() - t0,
                "dungeons": c["dungeons"],
                "beaten_before": c["beaten_before"] / c["dungeons"],
                "beaten": c["beaten"] / c["dungeons"],
                "rooms_regenerated": c["rooms_regenerated"] / c["rooms"],
                "evaluation_seconds": c["seconds"],
                "history": result.history,
            }
        )
    return out


def collect(folders: list[Path]) -> dict[str, Any]:
    """Per-run results read from archive checkpoints (finished or not), grouped by mode, and each run's
    coverage after every batch (to compare generators at the same budget)."""
    from hmolqd.illuminate import load_illumination

    out: dict[str, Any] = {}
    for folder in folders:
        r = load_illumination(folder)
        c = r.counts
        out.setdefault(r.settings["mode"], []).append(
            {
                "seed": r.settings["seed"],
                "folder": str(folder),
                **r.stats,
                "dungeons": c["dungeons"],
                "beaten_before": c["beaten_before"] / c["dungeons"],
                "beaten": c["beaten"] / c["dungeons"],
                "rooms": c["rooms"],
                "rooms_regenerated": c["rooms_regenerated"] / c["rooms"],
                "evaluation_seconds": c["seconds"],
                "coverage_by_evaluations": {h["evaluations"]: h["coverage"] for h in r.history},
            }
        )
    return out


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


def markdown(parts: list[dict[str, Any]]) -> str:
    lines = []
    archives = [p for p in parts if "mode" in p]
    if archives:
        lines += [
            "| generator | seeds | evaluations | coverage mean [min, max] | QD score | beaten elites | "
            "beaten before / after regeneration (all dungeons) | rooms regenerated | evaluation s per run |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in archives:
            runs = p["runs"]
            lines.append(
                f"| {p['mode']} | {','.join(str(r['seed']) for r in runs)} | {p['evaluations']} | "
                f"{_spread([100 * r['coverage'] for r in runs])} % | {_spread([r['qd_score'] for r in runs])} | "
                f"{_spread([100 * r['beaten_elites'] for r in runs])} % | "
                f"{_spread([100 * r['beaten_before'] for r in runs])} % / "
                f"{_spread([100 * r['beaten'] for r in runs])} % | "
                f"{_spread([100 * r['rooms_regenerated'] for r in runs])} % | "
                f"{_spread([r['evaluation_seconds'] for r in runs])} |"
            )
        by_mode = {p["mode"]: [r["coverage"] for r in p["runs"]] for p in archives}
        if {"map-elites", "baseline"} <= set(by_mode):
            ratio = statistics.mean(by_mode["map-elites"]) / statistics.mean(by_mode["baseline"])
            lines += ["", f"Coverage of MAP-Elites / today's generator (means over seeds): {ratio:.2f}x"]
    for p in parts:
        if "real_maps" in p:
            lines += [
                "",
                f"Real dungeons played from their VGLC maps + graphs: {p['real_maps_beaten']} of 18 beaten",
                "",
                "| dungeon | beaten | rooms on path / rooms | placed nodes / map rooms | links shown as doors | "
                "what stops it |",
                "|---|---|---:|---:|---:|---|",
            ]
            for r in p["real_maps"]:
                lines.append(
                    f"| {r['name']} | {'yes' if r['beaten'] else 'no'} | {r['rooms_on_path']} / {r['rooms']} | "
                    f"{r['placed_nodes']} / {r['map_rooms']} | {r['links_shown_as_doors']} / {r['links']} | "
                    f"{(r.get('not_beatable_because') or r['stuck'])[:160]} |"
                )
            b = p.get("real_graphs_built")
            lines += (
                []
                if b is None
                else [
                    "",
                    f"Real graphs built with the model: {b['dungeons']} dungeons, beaten before regeneration "
                    f"{100 * b['beaten_before']:.1f} %, after {100 * b['beaten']:.1f} %, rooms regenerated "
                    f"{100 * b['rooms_regenerated']:.1f} %, {b['seconds']:.0f} s",
                ]
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model_final.pt of the room model, or 'plain' for PlainRoomSource (a model-free proxy of the search)",
    )
    p.add_argument("--data", default=None, help="VGLC 'The Legend of Zelda' folder (default: discover)")
    p.add_argument("--part", choices=("real", "archive"), default=None)
    p.add_argument("--mode", choices=("map-elites", "baseline"), default="map-elites")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--real-seeds", type=int, default=5, help="seeds per real graph for the before/after measure")
    p.add_argument("--evaluations", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument(
        "--runs", type=Path, default=Path("runs/illuminate_bench"), help="checkpoint folders of the archive runs"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON results file of this part")
    p.add_argument("--merge", type=Path, nargs="*", default=None, help="print the tables of these part files")
    p.add_argument(
        "--collect", type=Path, nargs="*", default=None, help="read these archive folders' checkpoints into --out"
    )
    args = p.parse_args(argv)
    if args.collect is not None:
        result = collect(args.collect)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        for mode, runs in result.items():
            for r in runs:
                print(
                    f"{mode} seed {r['seed']}: {r['evaluations']} evaluations, coverage {100 * r['coverage']:.2f} %, "
                    f"QD {r['qd_score']:.1f}, beaten elites {100 * r['beaten_elites']:.1f} %, beaten before/after "
                    f"{100 * r['beaten_before']:.1f}/{100 * r['beaten']:.1f} %, rooms regenerated "
                    f"{100 * r['rooms_regenerated']:.1f} %, "
                    f"{r['evaluation_seconds']:.0f} s"
                )
        return 0
    if args.merge is not None:
        print(markdown([json.loads(f.read_text()) for f in args.merge]))
        return 0
    torch.set_num_threads(1)
    if args.part is None or (args.model is None and not (args.part == "real" and args.real_seeds == 0)):
        p.error("--model and --part are needed (or --merge FILES; --part real --real-seeds 0 needs no model)")
    if args.part == "real":
        result = part_real(
            as_source(args.model) if args.real_seeds else None, find_data_dir(args.data), args.real_seeds
        )
    else:
        model = PlainRoomSource() if str(args.model) == "plain" else args.model
        result = part_archive(model, args.mode, args.seeds, args.evaluations, args.runs, args.batch_size)
    result["note"] = "timings on a 2-core machine shared with other agents' jobs"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

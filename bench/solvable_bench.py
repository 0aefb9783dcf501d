"""Issue 22, bar 2: whole dungeons beaten by the player before and after regeneration, on one CPU thread.

    OMP_NUM_THREADS=1 python bench/solvable_bench.py --model runs/cpu/outputs/model_final.pt \\
        --data /path/to/vglc-zelda --seeds 0 1 2 --graph-seeds 10 --sampled 170 \\
        --out bench/results/solvable_after.json

Per seed s, one batched build (`hmolqd.dungeon.build_dungeons`, all rooms of all its dungeons in one call,
then one call per regeneration round) of
- the 18 real VGLC room graphs, each embedded with `--graph-seeds` seeds (s * graph_seeds + k), and
- `--sampled` sampled layouts `sample_layout(s * 100_000 + i)`, planned with seed s;
rooms sampled with seed s. For each seed: dungeons beaten by the whole-dungeon player on the first rooms
(before any regeneration) and on the final ones, rooms regenerated (share, and extra generations per room),
rooms still failing, where the player got stuck before regeneration (most common reasons), and the seconds
of the build (plan, rooms, regeneration, play). The totals pool the seeds; mean and range are over seeds.
`--steps` / `--guidance` override the sampling settings of the room source.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hmolqd.data import find_data_dir
from hmolqd.data.graph import graph_dir
from hmolqd.dungeon import DungeonConfig, build_dungeons, plan, read_layout, sample_layout
from hmolqd.dungeon.api import as_source

SAMPLED_SEED_STRIDE = 100_000  # sampled layouts of seed s: sample_layout(s * stride + i)


def group_numbers(dungeons: list[Any]) -> dict[str, Any]:
    """Beaten before / after, rooms regenerated and failing, for a list of built dungeons."""
    rooms = sum(len(d.layout.rooms) for d in dungeons)
    regenerated = sum(int((d.generated > 1).sum()) for d in dungeons)
    stuck = collections.Counter(d.play_before.stuck[:120] for d in dungeons if not d.play_before.beaten).most_common(6)
    return {
        "dungeons": len(dungeons),
        "rooms": rooms,
        "beaten_before": sum(d.play_before.beaten for d in dungeons),
        "beaten_after": sum(d.play.beaten for d in dungeons),
        "share_beaten_before": sum(d.play_before.beaten for d in dungeons) / len(dungeons),
        "share_beaten_after": sum(d.play.beaten for d in dungeons) / len(dungeons),
        "rooms_regenerated": regenerated,
        "share_rooms_regenerated": regenerated / rooms,
        "extra_generations_per_room": sum(int((d.generated - 1).sum()) for d in dungeons) / rooms,
        "rooms_failing": sum(len(d.failures) for d in dungeons),
        "not_beaten_after": [d.layout.name for d in dungeons if not d.play.beaten],
        "stuck_before": stuck,
    }


def run_seed(
    source: Any, graphs: list[Path], seed: int, graph_seeds: int, sampled: int, config: DungeonConfig
) -> dict[str, Any]:
    """One batched build of the seed's dungeons (module docstring) -> numbers by group and in all."""
    start = time.perf_counter()
    real = [read_layout(g) for g in graphs]
    plans = [plan(layout, config, seed=seed * graph_seeds + k) for k in range(graph_seeds) for layout in real]
    n_real = len(plans)
    plans += [plan(sample_layout(seed * SAMPLED_SEED_STRIDE + i), config, seed=seed) for i in range(sampled)]
    dungeons = build_dungeons(plans, source, config, seed=seed)
    seconds = time.perf_counter() - start
    out = {
        "seed": seed,
        "seconds": seconds,
        "all": group_numbers(dungeons),
        "real_graphs": group_numbers(dungeons[:n_real]) if n_real else None,
        "sampled": group_numbers(dungeons[n_real:]) if sampled else None,
    }
    a = out["all"]
    print(
        f"seed {seed}: {a['dungeons']} dungeons, beaten before {a['share_beaten_before']:.3f}, "
        f"after {a['share_beaten_after']:.3f}, rooms regenerated {a['share_rooms_regenerated']:.3f}, "
        f"{seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return out


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the seeds, and the mean and range over seeds of each share."""
    total = {k: sum(r["all"][k] for r in runs) for k in ("dungeons", "rooms", "beaten_before", "beaten_after")}
    total["rooms_regenerated"] = sum(r["all"]["rooms_regenerated"] for r in runs)
    total["seconds"] = sum(r["seconds"] for r in runs)
    total["share_beaten_before"] = total["beaten_before"] / total["dungeons"]
    total["share_beaten_after"] = total["beaten_after"] / total["dungeons"]
    total["share_rooms_regenerated"] = total["rooms_regenerated"] / total["rooms"]
    total["seconds_per_dungeon"] = total["seconds"] / total["dungeons"]
    spread = {}
    for key in ("share_beaten_before", "share_beaten_after", "share_rooms_regenerated"):
        values = [r["all"][key] for r in runs]
        spread[key] = {"mean": statistics.mean(values), "min": min(values), "max": max(values)}
    return {"total": total, "over_seeds": spread}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Room source: {result['source']}; {result['config']}",
        "",
        "| seed | dungeons (rooms) | beaten before regeneration | beaten after | rooms regenerated | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        a = r["all"]
        before = f"{a['beaten_before']} ({100 * a['share_beaten_before']:.1f} %)"
        after = f"{a['beaten_after']} ({100 * a['share_beaten_after']:.1f} %)"
        lines.append(
            f"| {r['seed']} | {a['dungeons']} ({a['rooms']}) | {before} | {after} "
            f"| {100 * a['share_rooms_regenerated']:.1f} % | {r['seconds']:.0f} |"
        )
    t, s = result["pooled"]["total"], result["pooled"]["over_seeds"]
    lines.append(
        f"| all | {t['dungeons']} ({t['rooms']}) | {t['beaten_before']} ({100 * t['share_beaten_before']:.1f} %) | "
        f"{t['beaten_after']} ({100 * t['share_beaten_after']:.1f} %) | {100 * t['share_rooms_regenerated']:.1f} % | "
        f"{t['seconds']:.0f} |"
    )
    lines.append("")
    for key, v in s.items():
        lines.append(f"- {key}: mean {100 * v['mean']:.1f} %, range {100 * v['min']:.1f} - {100 * v['max']:.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model_final.pt of a trained room model")
    parser.add_argument("--data", default=None, help="the VGLC Zelda folder (default: found as the training does)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--graph-seeds", type=int, default=10, help="embeddings of each real graph per seed")
    parser.add_argument("--sampled", type=int, default=170, help="sampled layouts per seed")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    if args.graph_seeds < 0 or args.sampled < 0 or args.graph_seeds + args.sampled == 0:
        parser.error("--graph-seeds and --sampled must be >= 0, and not both 0")
    torch.set_num_threads(1)
    graphs = sorted(graph_dir(find_data_dir(args.data)).glob("*.dot")) if args.graph_seeds else []
    source = as_source(args.model, steps=args.steps, guidance=args.guidance)
    config = DungeonConfig()
    runs = [run_seed(source, graphs, s, args.graph_seeds, args.sampled, config) for s in args.seeds]
    result = {
        "source": source.name,
        "model": str(args.model),
        "config": repr(config),
        "graphs": [g.stem for g in graphs],
        "graph_seeds": args.graph_seeds,
        "sampled_per_seed": args.sampled,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "pooled": pooled(runs),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

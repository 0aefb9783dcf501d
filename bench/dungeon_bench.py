"""Issue 12 targets for whole dungeons, measured on one CPU thread; writes JSON and prints Markdown tables.

    OMP_NUM_THREADS=1 python bench/dungeon_bench.py --model runs/cpu/outputs/model_final.pt \\
        --data /path/to/vglc-zelda --out bench/results/dungeon.json --maps bench
    python bench/dungeon_bench.py --source markov --data /path/to/vglc-zelda   # no model: the Markov chain

Measures (all rooms of a group of dungeons in batched calls, as `hmolqd.dungeon.build_dungeons` does):
- (a) each of the 18 real graphs x `--seeds` seeds (the seed moves the embedding and the rooms) and
  (b) `--sampled` sampled layouts: doors agreeing between every pair of grid neighbours, rooms with exactly
  the doors asked, walkability before and after regeneration, the mission check, rooms regenerated and
  still failing;
- time for one 20-room dungeon (sampled layout, including regeneration; median and max over 5 seeds) and
  for 100 dungeons of 20 rooms in one batched build;
- the layout statistics of the sampled layouts next to the real graphs (and the real maps' extents).
`--steps` / `--guidance` / `--temperature` override the model's sampling settings (default: those stored with the
model).
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

from hmolqd.data import find_data_dir, load_corpus
from hmolqd.data.dataset import augment_mirror
from hmolqd.dungeon import (
    CorpusRoomSource,
    DungeonConfig,
    MarkovRoomSource,
    PlainRoomSource,
    build_dungeons,
    embed,
    layout_stats,
    plan,
    read_layout,
    sample_layout,
)
from hmolqd.dungeon.api import as_source, dungeon_metrics
from hmolqd.dungeon.export import save_map
from hmolqd.dungeon.sampler import STAT_NAMES
from hmolqd.render import dungeon_to_rgb, save_png

ROOMS_FOR_TIMING = 20


def run_real(
    source: Any, graph_files: list[Path], seeds: int, config: DungeonConfig
) -> tuple[dict[str, Any], list[Any]]:
    layouts = [read_layout(f) for f in graph_files]
    dungeons = []
    for seed in range(seeds):  # one batched build per seed: the 18 graphs together
        dungeons += build_dungeons([plan(layout, config, seed=seed) for layout in layouts], source, config, seed=seed)
        print(
            f"  real graphs, seed {seed}: {sum(d.walk.walkable for d in dungeons)}/{len(dungeons)} walkable so far",
            file=sys.stderr,
        )
    return dungeon_metrics(dungeons), dungeons


def run_sampled(source: Any, count: int, config: DungeonConfig, chunk: int = 50) -> tuple[dict[str, Any], list[Any]]:
    dungeons = []
    for start in range(0, count, chunk):
        plans = [plan(sample_layout(seed), config, seed=seed) for seed in range(start, min(count, start + chunk))]
        dungeons += build_dungeons(plans, source, config, seed=start)
        print(f"  sampled layouts: {len(dungeons)}/{count} built", file=sys.stderr)
    return dungeon_metrics(dungeons), dungeons


def timings(source: Any, config: DungeonConfig) -> dict[str, Any]:
    single = []
    for seed in range(5):
        t0 = time.perf_counter()
        build_dungeons(
            [plan(sample_layout(seed, rooms=ROOMS_FOR_TIMING), config, seed=seed)], source, config, seed=seed
        )
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    plans = [plan(sample_layout(10_000 + i, rooms=ROOMS_FOR_TIMING), config, seed=i) for i in range(100)]
    batch = build_dungeons(plans, source, config, seed=1)
    batch_s = time.perf_counter() - t0
    return {
        "one_dungeon_s_median": statistics.median(single),
        "one_dungeon_s_max": max(single),
        "one_dungeon_s": single,
        "hundred_dungeons_s": batch_s,
        "hundred_dungeons": dungeon_metrics(batch),
    }


def layout_table(graph_files: list[Path], sampled: int, data_dir: Path) -> dict[str, Any]:
    real = [layout_stats(layout, embed(layout)).row() for layout in map(read_layout, graph_files)]
    samp = []
    for seed in range(sampled):
        layout = sample_layout(seed)
        samp.append(layout_stats(layout, embed(layout)).row())
    corpus = load_corpus(data_dir)
    shapes = {m.dungeon: m.grid_shape for m in corpus.meta}

    def describe(values: list[float]) -> dict[str, float]:
        return {
            "mean": statistics.mean(values),
            "sd": statistics.pstdev(values),
            "min": min(values),
            "max": max(values),
        }

    table = {
        name: {"real": describe([r[k] for r in real]), "sampled": describe([s[k] for s in samp])}
        for k, name in enumerate(STAT_NAMES)
    }
    table["real_map_rows"] = {"real": describe([float(s[0]) for s in shapes.values()])}
    table["real_map_cols"] = {"real": describe([float(s[1]) for s in shapes.values()])}
    return table


def markdown(result: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f} %"

    lines = [
        f"Room source: {result['source']}; config: {result['config']}",
        "",
        "| measure | real graphs x seeds | sampled layouts | target |",
        "|---|---:|---:|---|",
    ]
    real, samp = result["real"], result["sampled"]
    rows = [
        ("dungeons (rooms)", f"{real['dungeons']} ({real['rooms']})", f"{samp['dungeons']} ({samp['rooms']})", ""),
        (
            "doors agree with the layout between all grid neighbours",
            pct(real["doors_agree"]),
            pct(samp["doors_agree"]),
            "100 %",
        ),
        (
            "rooms with exactly the doors asked",
            pct(real["rooms_with_doors_asked"]),
            pct(samp["rooms_with_doors_asked"]),
            "",
        ),
        ("walkable before regeneration", pct(real["walkable_before"]), pct(samp["walkable_before"]), "reported"),
        ("walkable after regeneration", pct(real["walkable"]), pct(samp["walkable"]), ">= 99 %"),
        ("mission check passes", pct(real["mission_beatable"]), pct(samp["mission_beatable"]), "100 % (real graphs)"),
        ("rooms regenerated", pct(real["rooms_regenerated"]), pct(samp["rooms_regenerated"]), "reported"),
        ("rooms still failing", pct(real["rooms_failing"]), pct(samp["rooms_failing"]), "reported"),
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    t = result["timing"]
    lines += [
        "",
        "| time (1 thread) | measured | target |",
        "|---|---:|---:|",
        f"| one {ROOMS_FOR_TIMING}-room dungeon, incl. regeneration (median / max of 5) | "
        f"{t['one_dungeon_s_median']:.2f} s / {t['one_dungeon_s_max']:.2f} s | <= 5 s |",
        f"| 100 dungeons of {ROOMS_FOR_TIMING} rooms, batched | {t['hundred_dungeons_s']:.1f} s | <= 60 s |",
    ]
    lines += [
        "",
        "| layout statistic | real graphs (18) mean ± sd [min, max] | sampled layouts mean ± sd [min, max] |",
        "|---|---:|---:|",
    ]
    for name, cell in result["layouts"].items():
        fmt = [
            f"{c['mean']:.2f} ± {c['sd']:.2f} [{c['min']:.2f}, {c['max']:.2f}]"
            for c in (cell["real"], cell.get("sampled"))
            if c
        ]
        lines.append(f"| {name} | {fmt[0]} | {fmt[1] if len(fmt) > 1 else '-'} |")
    return "\n".join(lines)


def make_source(args: argparse.Namespace, data_dir: Path) -> Any:
    if args.model:
        from hmolqd.checkpointing.export import load_model

        sampling = {
            k: v
            for k, v in (("steps", args.steps), ("guidance", args.guidance), ("temperature", args.temperature))
            if v is not None
        }
        return as_source(load_model(args.model), **sampling)
    corpus = load_corpus(data_dir)
    rooms = augment_mirror(corpus).rooms
    return {
        "markov": lambda: MarkovRoomSource(rooms),
        "corpus": lambda: CorpusRoomSource(rooms),
        "plain": PlainRoomSource,
    }[args.source]()


def write_maps(source: Any, graph_files: list[Path], data_dir: Path, folder: Path, config: DungeonConfig) -> None:
    """The README pair: the real tloz1_1 map and a dungeon generated for its graph LoZ_1.dot (seed 0)."""
    layout = read_layout(next(f for f in graph_files if f.stem == "LoZ_1"))
    (dungeon,) = build_dungeons([plan(layout, config, seed=0)], source, config, seed=0)
    walk = "walkable" if dungeon.walk.walkable else "not walkable"
    save_map(dungeon, folder / "dungeon_generated_LoZ_1.png", title=f"LoZ_1.dot, rooms from {source.name}: {walk}")
    corpus = load_corpus(data_dir)
    idx = [i for i, m in enumerate(corpus.meta) if m.dungeon == "tloz1_1"]
    rgb = dungeon_to_rgb(
        corpus.rooms[idx], [corpus.meta[i].slot_row for i in idx], [corpus.meta[i].slot_col for i in idx]
    )
    save_png(rgb, folder / "dungeon_real_tloz1_1.png", title="tloz1_1: the real Level 1 (VGLC)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help="model_final.pt of the room model to measure")
    p.add_argument(
        "--source", choices=("markov", "corpus", "plain"), default="markov", help="room source when no --model is given"
    )
    p.add_argument("--data", default=None, help="VGLC 'The Legend of Zelda' folder (default: discover)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per real graph")
    p.add_argument("--sampled", type=int, default=200, help="sampled layouts")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's sample_steps)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's guidance_scale)")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="temperature of the code draws (default: the model's sample_temperature)",
    )
    p.add_argument("--max-regenerations", type=int, default=DungeonConfig().max_regenerations)
    p.add_argument("--skip", nargs="*", default=(), choices=("real", "sampled", "timing"), help="parts to leave out")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--maps", type=Path, default=None, help="folder for the README map pair")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data_dir = find_data_dir(args.data)
    graph_files = sorted((data_dir / "Graph Processed").glob("*.dot"))
    config = DungeonConfig(max_regenerations=args.max_regenerations)
    source = make_source(args, data_dir)
    result: dict[str, Any] = {
        "source": source.name,
        "model": str(args.model) if args.model else None,
        "config": config.__dict__,
    }
    t0 = time.perf_counter()
    result["real"] = (
        run_real(source, graph_files, args.seeds, config)[0] if "real" not in args.skip else dungeon_metrics([])
    )
    result["sampled"] = (
        run_sampled(source, args.sampled, config)[0] if "sampled" not in args.skip else dungeon_metrics([])
    )
    result["timing"] = (
        timings(source, config)
        if "timing" not in args.skip
        else {
            "one_dungeon_s_median": float("nan"),
            "one_dungeon_s_max": float("nan"),
            "hundred_dungeons_s": float("nan"),
        }
    )
    result["layouts"] = layout_table(graph_files, args.sampled, data_dir)
    result["wall_s"] = time.perf_counter() - t0
    if args.maps:
        write_maps(source, graph_files, data_dir, args.maps, config)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

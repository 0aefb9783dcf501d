"""Model-free proxy of bar 3 (issue 22): MAP-Elites against today's generator with plain rooms.

`PlainRoomSource` builds every room empty with exactly the requested doors and stairs, so a dungeon's
descriptors come from its layout and the player alone: a fast proxy for developing the search, not the
issue's measurement (that one uses the `cpu` preset's room model). Writes, per run, the coverage after
every batch and the occupied cells, to compare searches at the same budget.

    OMP_NUM_THREADS=1 python bench/search_proxy.py --mode map-elites --seeds 0 1 2 --evaluations 2000 \
        --out bench/results/search_map-elites.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hmolqd.dungeon.api import as_source
from hmolqd.dungeon.source import PlainRoomSource
from hmolqd.illuminate import illuminate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="map-elites")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--evaluations", type=int, default=2000)
    p.add_argument("--model", default=None, help="a model_final.pt instead of plain rooms")
    p.add_argument("--label", default="", help="what search this is (e.g. the commit)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core; same archive)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    runs = []
    for seed in args.seeds:
        source = as_source(args.model) if args.model else PlainRoomSource()
        t0 = time.perf_counter()
        r = illuminate(
            source, evaluations=args.evaluations, seed=seed, mode=args.mode, outputs=False, workers=args.workers
        )
        seconds = time.perf_counter() - t0
        data = r.archive.data()
        runs.append(
            {
                "seed": seed,
                "seconds": round(seconds, 1),
                "stats": r.stats,
                "coverage_by_evaluations": {h["evaluations"]: h["coverage"] for h in r.history},
                "cells": sorted(int(i) for i in data["index"]),
                "counts": r.counts,
            }
        )
        print(seed, r.stats, f"{seconds:.0f} s", flush=True)
    cov = [run["stats"]["coverage"] for run in runs]
    summary = {"mean": float(np.mean(cov)), "min": float(min(cov)), "max": float(max(cov))}
    blob = {
        "source": "model " + args.model if args.model else "PlainRoomSource (proxy)",
        "mode": args.mode,
        "label": args.label,
        "evaluations": args.evaluations,
        "coverage": summary,
        "runs": runs,
        "note": "times measured on 2 CPU cores shared with other agents' jobs",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(blob, indent=1) + "\n")
    print(summary)


if __name__ == "__main__":
    main()

"""Checkpoint size and save cost at the notebook's default model and cadence, and the share of training wall time.

A thin entry point to the suite's checkpoint measurement (`hbench.ckptbench.checkpoint_costs`, also run by
`python bench/run.py`): trains the notebook's CONFIG model for a few epochs per stage on this machine, sync
and (once `checkpoint_async` exists) async, and reads the trainer's own accounting (`TrainResult.checkpoint_stats`).

    python bench/checkpoint_cost.py --data ../shared/data/vglc-zelda --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the repo's hmolqd, also where it is not pip-installed

from hbench.ckptbench import checkpoint_costs  # noqa: E402
from hbench.sizes import QUICK  # noqa: E402
from hbench.suite import Context, base_config  # noqa: E402

from hmolqd.device import resolve_device  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="VGLC Zelda folder (default: discover)")
    parser.add_argument("--epochs", type=int, default=2, help="diffusion epochs (after 1 VQ-VAE epoch)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    sizes = dataclasses.replace(QUICK, checkpoint_epochs=(1, args.epochs))
    with tempfile.TemporaryDirectory(prefix="checkpoint_cost_") as tmp:
        ctx = Context(Path(tmp), resolve_device(args.device, key="--device"), args.data, sizes)
        result = checkpoint_costs(ctx, base_config("notebook"))
    for mode in ("sync", "async"):
        print(
            f"{mode}: " + json.dumps({k: v for k, v in result[mode].items() if k not in ("disk", "stats")}, indent=None)
        )


if __name__ == "__main__":
    main()

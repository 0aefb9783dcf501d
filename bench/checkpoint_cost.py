"""Checkpoint size and save time at the default config, and the share of training wall time spent saving.

Trains the DEFAULT model (Config() with only data/paths/epoch counts overridden) for a few epochs per stage
on this machine and reads the trainer's own accounting (CheckpointManager.stats via the final log line).

    python bench/checkpoint_cost.py --data ../shared/data/vglc-zelda --epochs 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hmolqd.config import Config
from hmolqd.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="VGLC Zelda folder (default: discover)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the VQ-VAE and diffusion stages each")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.from_flat({
            "data_dir": args.data, "checkpoint_dir": f"{tmp}/ckpt", "output_dir": f"{tmp}/out", "device": args.device,
            "vqvae_epochs": args.epochs, "num_epochs": args.epochs, "sample_every": 0,
        })
        start = time.perf_counter()
        train(cfg, log=lines.append)
        wall = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in Path(tmp, "ckpt").glob("*.pt")}
    print(next(line for line in lines if line.startswith("checkpointing:")))
    print(f"total wall time {wall:.1f} s (incl. final samples and zip)")
    for name, size in sorted(sizes.items()):
        print(f"  {name:36s} {size / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()

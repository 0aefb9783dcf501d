"""Does the VQ-VAE tokenizer meet its bar on the real corpus?  (CPU, a few minutes)

Bar (held-out dungeons DataConfig.val_dungeons, whole dungeons never seen in training):
    tile accuracy >= 99.5 %  and  whole-room exact reconstruction >= 90 %;  codebook usage is reported.

Trains the VQ-VAE stage with the real trainer (`hmolqd.training.loop.train`, the same optimizer step, schedule
and data order as any run; the diffusion stages set to 0 epochs) in a temporary folder, then prints the parameter
count, wall and CPU seconds, train / held-out tile and room accuracy, codebook usage, perplexity and PASS/FAIL.
Defaults are the `cpu` preset's VQ-VAE keys; any config key can be overridden:

    python bench/vqvae_bar.py                                   # the cpu preset's VQ-VAE
    python bench/vqvae_bar.py --set downsample=4 --set vqvae_epochs=60 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from hmolqd.config import Config
from hmolqd.data import find_data_dir, load_corpus, split_corpus
from hmolqd.training.loop import train

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VGLC = REPO.parent / "shared" / "data" / "vglc-zelda"
BAR_TILE, BAR_ROOM = 0.995, 0.90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vglc-dir", type=Path, default=DEFAULT_VGLC)
    parser.add_argument("--preset", default="cpu", help="preset whose VQ-VAE keys are measured (default cpu)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for the measurement")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory(prefix="vqvae_bar_") as tmp:
        cfg = Config.preset(args.preset).with_overrides(
            data_dir=str(args.vglc_dir),
            seed=args.seed,
            num_epochs=0,
            joint_epochs=0,
            sample_every=0,
            auto_resume=False,
            checkpoint_dir=f"{tmp}/ckpt",
            output_dir=f"{tmp}/out",
            **overrides,
        )
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = train(cfg, log=lambda msg: None)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    vqvae = result.generator.vqvae.eval()
    train_c, val_c = split_corpus(load_corpus(find_data_dir(args.vglc_dir)), cfg.data.val_dungeons)
    m = cfg.model
    print(
        f"VQ-VAE: downsample={m.downsample} embedding_dim={m.embedding_dim} latent_dim={m.latent_dim} "
        f"num_embeddings={m.num_embeddings}, "
        f"{cfg.train.vqvae_epochs} epochs, batch {cfg.train.batch_size}, lr {cfg.train.learning_rate}, seed "
        f"{args.seed}, {args.threads} thread(s)"
    )
    print(f"parameters: {sum(p.numel() for p in vqvae.parameters()):,}  latent grid {vqvae.latent_shape}")
    print(
        f"training (the real trainer, outputs included): {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"loss {result.history[0]['train_loss']:.4f} -> {result.history[-1]['train_loss']:.4f}"
    )
    on_val = vqvae.evaluate(val_c.rooms)
    for name, rooms in (("train", train_c.rooms), ("held-out", val_c.rooms)):
        r = vqvae.evaluate(rooms)
        print(
            f"{name:>9}: tile acc {r['tile_accuracy']:.4%}  room acc {r['room_accuracy']:.2%}  codebook usage "
            f"{r['codebook_usage']:.2%}  perplexity {r['perplexity']:.1f}"
        )
    ok = on_val["tile_accuracy"] >= BAR_TILE and on_val["room_accuracy"] >= BAR_ROOM
    print(
        f"{'PASS' if ok else 'FAIL'}: held-out tile acc {on_val['tile_accuracy']:.4%} (bar {BAR_TILE:.1%}), room acc "
        f"{on_val['room_accuracy']:.2%} (bar {BAR_ROOM:.0%})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

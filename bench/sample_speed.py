"""Time hmolqd.sampling.generate.generate: rooms per second for sampling + decoding on this machine.

    python bench/sample_speed.py                       # default ModelConfig, untrained, 1000 rooms, DDIM-50
    python bench/sample_speed.py --set downsample=2 --threads 2 --n 200
    python bench/sample_speed.py --state-dict gen.pt   # a saved RoomModel.state_dict()

A thin entry point to the suite's timing (`hbench.samplebench.timed_generate`); `python bench/run.py` measures
every sampler, step count and batch with the quality at each. On a CPU shared with other busy processes,
`--threads 1` can be several times faster than 2 threads; compare both. Speed does not depend on the
weights, so an untrained RoomModel times the same as a trained one. Each room gets a random door set
(seeded), so classifier-free guidance runs its batched cond + uncond forward.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the repo's hmolqd, also where it is not pip-installed

from hbench.samplebench import timed_generate  # noqa: E402

from hmolqd.config import Config  # noqa: E402
from hmolqd.models.room_model import RoomModel  # noqa: E402
from hmolqd.sampling.generate import generate  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="rooms to generate")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--state-dict", default=None, help="file holding a RoomModel.state_dict() (optional)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ModelConfig override, repeatable")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    model = RoomModel(Config.from_flat(overrides).model)
    if args.state_dict:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
    model.to(args.device)
    doors = torch.rand(args.n, 4, generator=torch.Generator().manual_seed(0)) < 0.5  # (n, 4)

    params = sum(p.numel() for p in model.diffusion.denoiser.parameters())
    print(f"latent grid {model.vqvae.latent_shape}, denoiser {params:,} params, threads {torch.get_num_threads()}, device {args.device}")
    generate(model, min(args.n, 8), doors=doors[:8], steps=2, guidance=args.guidance)  # warm-up
    seconds, rooms = timed_generate(model, args.n, {"doors": doors}, args.steps, {"guidance": args.guidance}, batch_size=args.batch_size)
    print(f"{rooms.shape[0]} rooms, DDIM-{args.steps}, guidance {args.guidance}: {seconds:.1f} s, {rooms.shape[0] / seconds:.1f} rooms/s")


if __name__ == "__main__":
    main()

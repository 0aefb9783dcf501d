"""Time hmolqd.sampling.generate.generate: rooms per second for sampling + decoding on this machine.

    # the default model and sampler, untrained, 1000 rooms in one batch
    python bench/sample_speed.py --threads 1
    # a trained model, its own settings
    python bench/sample_speed.py --model runs/cpu/outputs/model_final.pt --threads 1
    python bench/sample_speed.py --set model_kind=continuous --set sample_steps=50 --set attn_radius=0 \
        --set cond_attributes=false

A thin entry point to the suite's timing (`hbench.samplebench.timed_generate`); `python bench/run.py` measures
every sampler, step count and batch with the quality at each. On a CPU shared with other busy processes,
`--threads 1` can be several times faster than 2 threads; compare both. Speed does not depend on the
weights, so an untrained RoomModel times the same as a trained one, except under a guard (`pattern_guard`,
`request_guard`, `copy_guard`): how many rooms it draws again depends on the model, so time a trained one
there. Each room gets a random door set (seeded), so classifier-free guidance runs its batched cond + uncond
forward. Sampling settings are the
model's (its run config: the defaults, `--set` keys, or those saved with `--model`).
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

from hmolqd.checkpointing.export import load_model  # noqa: E402
from hmolqd.config import Config  # noqa: E402
from hmolqd.models.room_model import RoomModel  # noqa: E402
from hmolqd.sampling.generate import generate, sampling_settings  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="rooms to generate")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's sample_steps)")
    parser.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="rooms per network call (generate's batch_size; its default 256)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median and the range are printed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model", default=None, help="a model_final.pt to time with its own sampling settings (optional)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config key for the untrained model, repeatable"
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    model = load_model(args.model) if args.model else RoomModel.from_config(Config.from_flat(overrides)).eval()
    model.to(args.device)
    sampling = {k: v for k, v in (("steps", args.steps), ("guidance", args.guidance)) if v is not None}
    settings = sampling_settings(model, **sampling)
    doors = torch.rand(args.n, 4, generator=torch.Generator().manual_seed(0)) < 0.5  # (n, 4)

    params = sum(p.numel() for p in model.diffusion.denoiser.parameters())
    print(
        f"{model.cfg.model_kind} model, grid {model.vqvae.latent_shape}, denoiser {params:,} params, threads "
        f"{torch.get_num_threads()}, device {args.device}"
    )
    generate(model, min(args.n, 8), doors=doors[:8], steps=2)  # warm-up
    others = {k: v for k, v in sampling.items() if k != "steps"}
    runs = [
        timed_generate(model, args.n, {"doors": doors}, settings.sample_steps, others, batch_size=args.batch_size)
        for _ in range(args.repeats)
    ]
    rates = sorted(args.n / seconds for seconds, _ in runs)
    keywords = settings.as_keywords()
    shown = ", ".join(f"{k} {keywords[k]}" for k in ("steps", "guidance", "sampler", "pattern_guard", "request_guard"))
    print(
        f"generate(model, {args.n}, batch_size={args.batch_size}) ({shown}), {args.repeats} calls: "
        f"median {rates[len(rates) // 2]:.1f} rooms/s (range {rates[0]:.1f}-{rates[-1]:.1f})"
    )


if __name__ == "__main__":
    main()

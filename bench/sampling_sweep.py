"""Score one trained model under several sampling settings (1,000 rooms each, like `evaluate`).

    python bench/sampling_sweep.py --model runs/cpu/outputs/model_final.pt --data ../shared/data/vglc-zelda \
        "guidance=2" "guidance=3" "guidance=2,temperature=1.15" "sampler=confidence"

Each setting is comma-separated `generate` sampling keywords (a key of hmolqd.config.SamplingSettings or a
short name such as steps, guidance); what a setting leaves out is the model's own. The conditions are those
of `evaluate` (door sides and stairs of the
training rooms drawn with seed 0), so a row with no keys reproduces `evaluate`'s table. Prints a Markdown
table; `--out FILE` also writes every report as JSON. Quality is deterministic for a seed; rooms/s is only
meaningful on an otherwise idle machine with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hmolqd.checkpointing.export import load_model
from hmolqd.config import SamplingSettings
from hmolqd.data import augment_mirror, find_data_dir, load_corpus, split_corpus
from hmolqd.evaluation.report import evaluation_report

COLUMNS = (
    "playable",
    "novel_playable",
    "novel_playable_symmetric",
    "symmetric",
    "distinct",
    "diversity",
    "door_adherence",
    "tile_kl_train_gen",
    "pattern_kl_train_gen",
)


def parse_setting(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        try:
            SamplingSettings().with_overrides(**{key: None})  # a config key or one of generate's short keywords
        except TypeError as err:
            raise SystemExit(f"setting {text!r}: {err}") from err
        if key in ("sampler", "ask_playable", "ask_symmetric", "ask_mirror"):
            out[key] = value
        else:
            out[key] = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
        if key in ("steps", "sample_steps"):
            out[key] = int(out[key])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write every report here as JSON")
    parser.add_argument(
        "settings", nargs="+", help="comma-separated key=value sampling settings ('' = the model's own)"
    )
    args = parser.parse_args(argv)

    model = load_model(args.model)
    cfg = model.config
    train, _ = split_corpus(load_corpus(find_data_dir(args.data)), cfg.data.val_dungeons)
    train = augment_mirror(train) if cfg.data.mirror_augment else train
    print("| setting | " + " | ".join(COLUMNS) + " | rooms/s | median nearest |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    reports = {}
    for text in args.settings:
        report = evaluation_report(model, train, n=args.samples, seed=args.seed, **parse_setting(text))
        reports[text] = report
        m = report["model"]
        cells = [f"{m[k]:.3f}" for k in COLUMNS] + [
            f"{report['timing']['rooms_per_second']:.0f}",
            f"{m['nearest_hamming']['median']:.0f}",
        ]
        print(f"| {text or 'model default'} | " + " | ".join(cells) + " |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(reports, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m hmolqd ...`: the same functions the notebooks call, from a shell.

Every subcommand listed by `--help` works; each returns exit status 0 on success and prints a one-line
error (no traceback) with exit status 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hmolqd.config import Config, ConfigError

Command = Callable[[argparse.Namespace], int]


def _fetch_data(args: argparse.Namespace) -> int:
    from hmolqd.data.fetch import run_fetch

    return run_fetch(args)


def _data_stats(args: argparse.Namespace) -> int:
    from hmolqd.data import find_data_dir, load_corpus, load_graphs
    from hmolqd.data.stats import corpus_stats, format_stats
    from hmolqd.render import dungeon_to_rgb, save_png

    data_dir = find_data_dir(args.data)
    corpus = load_corpus(data_dir)
    print(f"VGLC Zelda corpus: {data_dir}")
    print(format_stats(corpus_stats(corpus, load_graphs(data_dir))))
    if args.render:
        if args.dungeon not in corpus.dungeons:
            raise ConfigError(f"--dungeon {args.dungeon!r} is not in the corpus; choose one of {', '.join(corpus.dungeons)}")
        idx = [i for i, m in enumerate(corpus.meta) if m.dungeon == args.dungeon]
        rows = [corpus.meta[i].slot_row for i in idx]
        cols = [corpus.meta[i].slot_col for i in idx]
        rgb = dungeon_to_rgb(corpus.rooms[idx], rows, cols)
        print(f"wrote {save_png(rgb, args.render, legend=True, title=f'{args.dungeon} (VGLC)')}")
    return 0


def _load_config(args: argparse.Namespace) -> Config:
    cfg = Config.load(args.config) if args.config else Config()
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        overrides[key.strip()] = value
    return cfg.with_overrides(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hmolqd", description="Zelda dungeon-room generator (VQ-VAE + latent diffusion) on VGLC.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from hmolqd.data.fetch import add_fetch_arguments

    p = sub.add_parser("fetch-data", help="download the pinned VGLC Zelda files, verified by SHA-256")
    add_fetch_arguments(p)
    p.set_defaults(run=_fetch_data)

    p = sub.add_parser("data-stats", help="print corpus statistics and optionally render a dungeon map")
    p.add_argument("--data", default=None, help="VGLC 'The Legend of Zelda' folder (default: discover)")
    p.add_argument("--render", type=Path, default=None, help="write a dungeon map PNG here")
    p.add_argument("--dungeon", default="tloz1_1", help="dungeon to render (file stem, default tloz1_1)")
    p.set_defaults(run=_data_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hmolqd.data import VGLCFormatError

    try:
        return args.run(args)
    except (ConfigError, VGLCFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

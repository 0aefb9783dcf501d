"""The command line's arguments: one argparse subparser per subcommand of `python -m hmolqd`.

Only the words of the interface live here (flags, defaults, help); `hmolqd.cli.commands` holds the handlers that check
the values and call the library, and hands them to `build_parser`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from hmolqd.cli import args as cli_args
from hmolqd.settings.sampling import SAMPLE_DTYPES

Command = Callable[[argparse.Namespace], int]


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON config: flat like the notebook's CONFIG, or nested like config.json",
    )
    p.add_argument("--preset", default=None, help="a shipped preset (hmolqd/presets): smoke, cpu, gpu")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The parser of every subcommand; `args.run` is the subcommand's handler from `commands` (by name)."""
    about = "Zelda dungeon and room generator (VQ-VAE + discrete diffusion over its codes) on VGLC."
    parser = cli_args.Parser(prog="python -m hmolqd", description=about)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from hmolqd.data.fetch import DEFAULT_BASE_URL
    from hmolqd.dungeon.build import DungeonConfig
    from hmolqd.evaluation.report import PAGE_ROOMS
    from hmolqd.sampling.generate import DOOR_NAMES_HELP

    p = sub.add_parser("fetch-data", help="download the pinned VGLC Zelda files, verified by SHA-256")
    p.add_argument("dir", type=Path, help="folder to write the corpus into (created if missing)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="repository root at the pinned commit")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    p.set_defaults(run=commands["fetch-data"])

    p = sub.add_parser("data-stats", help="print corpus statistics and optionally render a dungeon map")
    p.add_argument("--data", default=None, help="VGLC 'The Legend of Zelda' folder (default: discover)")
    p.add_argument("--render", type=Path, default=None, help="write a dungeon map PNG here")
    p.add_argument("--dungeon", default="tloz1_1", help="dungeon to render (file stem, default tloz1_1)")
    p.set_defaults(run=commands["data-stats"])

    p = sub.add_parser("train", help="train (or resume) all stages; the notebook calls the same function")
    _add_config_arguments(p)
    p.add_argument(
        "--rewrite-outputs",
        action="store_true",
        help="when training is already finished, write model_final.pt, the pictures and the zip again "
        "(default: leave them)",
    )
    p.set_defaults(run=commands["train"])

    p = sub.add_parser("sample", help="generate rooms with model_final.pt and write a PNG grid")
    p.add_argument("--model", type=Path, required=True, help="model_final.pt (or any checkpoint)")
    p.add_argument(
        "-n",
        type=int,
        default=24,
        help=f"rooms to generate (at most {cli_args.MAX_SAMPLE_ROOMS:,}; "
        f"more than {PAGE_ROOMS} are drawn on several pages, OUT_001.png, OUT_002.png, ...)",
    )
    p.add_argument("--doors", default=None, help=f"door sides, {DOOR_NAMES_HELP}; default unconditional")
    p.add_argument("--stairs", default=None, help="'yes' / 'no' (default: unconditional)")
    p.add_argument(
        "--attributes",
        default=None,
        help="room attributes of a discrete model, e.g. 'monsters=yes,water=no' "
        "(names: monsters, water, playable, symmetric, mirror_rows, mirror_cols; yes / no / open); "
        "default: the model's own requests",
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the run's sample_steps)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the run's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ncols", type=int, default=6, help=f"rooms per row of the picture (1 .. {cli_args.MAX_NCOLS})")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: samples.png beside the model)")
    p.set_defaults(run=commands["sample"])

    p = sub.add_parser("dungeon", help="generate one whole dungeon (VGLC graph or sampled layout) with model_final.pt")
    p.add_argument("--model", type=Path, required=True, help="model_final.pt (or any checkpoint)")
    p.add_argument(
        "--graph", type=Path, default=None, help="a room graph in the VGLC .dot format (default: sample a layout)"
    )
    p.add_argument(
        "--rooms", type=int, default=None, help="rooms of the sampled layout (default: drawn like the real dungeons)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the layout, its placement and the rooms")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's sample_steps)")
    p.add_argument(
        "--max-regenerations",
        type=int,
        default=None,
        help=f"rounds of regenerating rooms that fail their checks (default {DungeonConfig().max_regenerations})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for dungeon.txt/.dot/.png/.json (default: dungeon/ beside the model)",
    )
    p.set_defaults(run=commands["dungeon"])

    p = sub.add_parser(
        "illuminate", help="fill a MAP-Elites archive of whole dungeons with model_final.pt (needs hmolqd[qd])"
    )
    p.add_argument("--model", type=Path, required=True, help="model_final.pt (or any checkpoint)")
    p.add_argument("--evaluations", type=int, default=2000, help="dungeons to build and play (default 2000)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the archive checkpoint and outputs (default: illuminate/ beside the model)",
    )
    p.add_argument(
        "--descriptors", nargs="+", default=["rooms", "path_share", "backtracking"], help="1-3 behaviour descriptors"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of the rooms")
    p.add_argument("--batch-size", type=int, default=50, help="dungeons per batch (one room-model call per round)")
    p.add_argument(
        "--mode", default="map-elites", help="map-elites, or baseline (sampled real templates, same archive)"
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's sample_steps)")
    p.add_argument(
        "--chunks", type=int, default=1, help="pieces each batch is built in (one Dask task each with --dask)"
    )
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="build the chunks on a Dask cluster: a scheduler address (tcp://host:8786), or 'local' for one "
        "worker process per chunk on this machine (needs hmolqd[dask]; default: in this process)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that walk and play the dungeons and write the elites' files (default: one per core; "
        "1: all in this process); the archive is the same whatever the number",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="where the room model samples: 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'; the archive "
        "records the sampling dtype this gives (float32 on a GPU, bf16 on a CPU with native bf16)",
    )
    p.set_defaults(run=commands["illuminate"])

    from hmolqd.evaluation.report import DEFAULT_JSON, DEFAULT_PNG

    p = sub.add_parser(
        "evaluate", help="score generated rooms against the training set and a Markov reference (table, JSON file)"
    )
    p.add_argument("--model", type=Path, required=True, help="model_final.pt written by training")
    p.add_argument(
        "--data",
        default=None,
        help="VGLC 'The Legend of Zelda' folder (default: the data_dir stored with "
        "the model where that folder exists, else discover)",
    )
    p.add_argument("--samples", type=int, default=1000, help="rooms to generate (default 1000, at most 20,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn conditions and of sampling")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's sample_steps)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's guidance_scale)")
    p.add_argument(
        "--sampler",
        choices=("random", "confidence"),
        default=None,
        help="discrete model: unmasking order (default: the model's sampler)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="discrete model: temperature of the code draws (default: the model's sample_temperature)",
    )
    p.add_argument("--eta", type=float, default=None, help="continuous model: DDIM eta (default: the model's ddim_eta)")
    p.add_argument(
        "--door-guidance",
        type=float,
        default=None,
        help="continuous model: door guidance strength (default: the model's door_guidance)",
    )
    p.add_argument(
        "--copy-guard",
        type=int,
        default=None,
        help="discrete model: redraw rooms whose interior is within COPY_GUARD - 1 tiles of a training interior; "
        "0 = off (default: the model's copy_guard)",
    )
    p.add_argument(
        "--pattern-guard",
        choices=("on", "off"),
        default=None,
        help="discrete model: redraw rooms holding a 2x2 tile window no training room has (default: the model's "
        "pattern_guard)",
    )
    p.add_argument(
        "--request-guard",
        choices=("on", "off"),
        default=None,
        help="discrete model: redraw rooms whose doors, stairs or attributes are not the ones asked for (default: "
        "the model's request_guard)",
    )
    p.add_argument(
        "--ask-playable",
        choices=("yes", "no", "open", "with_doors"),
        default=None,
        help="discrete model: ask rooms to be playable (with_doors: where a door is asked) (default: the model's "
        "ask_playable)",
    )
    p.add_argument(
        "--guard-draws",
        type=int,
        default=None,
        help="discrete model: draws of a room at most while a guard rejects it (default: the model's guard_draws)",
    )
    p.add_argument(
        "--sample-dtype",
        choices=SAMPLE_DTYPES,
        default=None,
        help="discrete model: the denoiser's dtype while sampling (auto: bfloat16 on a CPU with native bf16) "
        "(default: the model's sample_dtype)",
    )
    p.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'")
    p.add_argument("--png", type=Path, default=None, help=f"sample grid PNG (default: {DEFAULT_PNG} beside the model)")
    p.add_argument("--json", type=Path, default=None, help=f"report JSON (default: {DEFAULT_JSON} beside the model)")
    p.add_argument(
        "--print-json",
        action="store_true",
        help="also print the whole report as one JSON document on stdout (the table and file paths go to stderr)",
    )
    p.add_argument(
        "--no-dungeons", action="store_true", help="leave out the dungeon section (the 18 real room graphs built once)"
    )
    p.set_defaults(run=commands["evaluate"])
    return parser

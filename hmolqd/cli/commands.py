"""`python -m hmolqd ...`: the same functions the notebooks call, from a shell.

Every subcommand listed by `--help` works; each returns exit status 0 on success and prints a one-line
error (no traceback) with exit status 2 for bad input, naming the argument and the rule; exit status 1 is a
result that is no good (a failed download, a dungeon that cannot be walked or beaten), said in one line; a Ctrl-C
(SIGINT) that training does not turn into a clean stop ends with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hmolqd.cli import args as check
from hmolqd.cli import illuminate_command
from hmolqd.cli import parser as cli_parser
from hmolqd.cli.parser import Command
from hmolqd.config import Config, ConfigError


def _fetch_data(args: argparse.Namespace) -> int:
    from hmolqd.data.fetch import FetchError, fetch_vglc

    # Input errors (exit 2) before any folder is made or any byte fetched; a failed download is exit 1.
    check.base_url("--base-url", args.base_url)
    check.number("--timeout", args.timeout, 0, "seconds per network operation", above=True)
    check.folder_target("dir", args.dir)
    try:
        fetch_vglc(args.dir, args.base_url, timeout=args.timeout, progress=not args.quiet)
    except FetchError as err:
        print(f"fetch-data failed: {err}", file=sys.stderr)
        return 1
    return 0


# How `evaluate`'s flags are named in the library's errors (run_evaluate's arguments -> the flags that set them).
EVALUATE_FLAGS = {
    "model_path": "--model",
    "data_dir": "--data",
    "samples": "--samples",
    "steps": "--steps",
    "device": "--device",
}


def _evaluate(args: argparse.Namespace) -> int:
    """Print the table and where the report and the picture went; with --print-json, stdout is the report alone."""
    import json
    from functools import partial

    from hmolqd.dungeon.api import evaluation_section
    from hmolqd.evaluation.report import EvaluateOptions, format_report_table, run_evaluate

    check.at_most("--samples", args.samples, check.MAX_EVAL_SAMPLES, "rooms the metrics hold in memory at once")
    check.at_least("--steps", args.steps, 1, "sampling steps")
    check.seed("--seed", args.seed)
    check.number("--guidance", args.guidance, 0, "classifier-free guidance scale")
    check.number("--temperature", args.temperature, 0, "softmax temperature of the code draws", above=True)
    check.number("--eta", args.eta, 0, "DDIM eta; 0 = deterministic")
    check.number("--door-guidance", args.door_guidance, 0, "door guidance strength; 0 = off")
    check.at_least("--copy-guard", args.copy_guard, 0, "interior tiles a room must differ by; 0 = off")
    check.at_least("--guard-draws", args.guard_draws, 1, "draws of a room while a guard rejects it")
    check.file_target("--png", args.png, ".png")
    check.file_target("--json", args.json, ".json")
    keys = {
        "steps": args.steps,
        "guidance": args.guidance,
        "eta": args.eta,
        "door_guidance": args.door_guidance,
        "sampler": args.sampler,
        "temperature": args.temperature,
        "copy_guard": args.copy_guard,
        "pattern_guard": None if args.pattern_guard is None else args.pattern_guard == "on",
        "request_guard": None if args.request_guard is None else args.request_guard == "on",
        "guard_draws": args.guard_draws,
        "ask_playable": args.ask_playable,
        "sample_dtype": args.sample_dtype,
    }
    sampling = {k: v for k, v in keys.items() if v is not None}  # the same sampling keys for the dungeon section
    sections = {} if args.no_dungeons else {"dungeon": partial(evaluation_section, seed=args.seed, **sampling)}
    options = EvaluateOptions(sampling=sampling, sections=sections, names=EVALUATE_FLAGS)
    report = run_evaluate(
        args.model, args.data, args.samples, args.seed, args.png, args.json, device=args.device, options=options
    )
    # With --print-json stdout is exactly one JSON document (for scripts), so the words go to stderr.
    words = sys.stderr if args.print_json else sys.stdout
    print(format_report_table(report), file=words)
    print(f"wrote {report['files']['json']} (the whole report, JSON)", file=words)
    print(f"wrote {report['files']['png']} (generated rooms; a red outline marks one that is not playable)", file=words)
    if args.print_json:
        print(json.dumps(report, allow_nan=False))
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from hmolqd.data import find_data_dir, load_corpus, load_graphs
    from hmolqd.data.stats import corpus_stats, format_stats
    from hmolqd.render import dungeon_to_rgb, save_png

    check.file_target("--render", args.render, ".png")
    data_dir = find_data_dir(args.data, key="--data")
    corpus = load_corpus(data_dir)
    if args.render and args.dungeon not in corpus.dungeons:  # before any output
        raise ConfigError(
            f"--dungeon {args.dungeon!r} is not in the corpus; choose one of {', '.join(corpus.dungeons)}"
        )
    print(f"VGLC Zelda corpus: {data_dir}")
    print(format_stats(corpus_stats(corpus, load_graphs(data_dir))))
    if args.render:
        idx = [i for i, m in enumerate(corpus.meta) if m.dungeon == args.dungeon]
        rows = [corpus.meta[i].slot_row for i in idx]
        cols = [corpus.meta[i].slot_col for i in idx]
        rgb = dungeon_to_rgb(corpus.rooms[idx], rows, cols)
        print(f"wrote {save_png(rgb, args.render, legend=True, title=f'{args.dungeon} (VGLC)')}")
    return 0


def _load_config(args: argparse.Namespace) -> Config:
    if args.config and args.preset:
        raise ConfigError("give --config FILE or --preset NAME, not both (use --set key=value to change a preset)")
    cfg = Config.load(args.config) if args.config else Config.preset(args.preset) if args.preset else Config()
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        overrides[key.strip()] = value
    return cfg.with_overrides(**overrides)


def _train(args: argparse.Namespace) -> int:
    from hmolqd.device import resolve_device
    from hmolqd.training.loop import train

    cfg = _load_config(args)
    resolve_device(cfg.run.device)  # e.g. device=cuda without a GPU: a ConfigError before any training work
    from hmolqd.training.runtime import TrainingInterrupted

    try:
        result = train(cfg, rewrite_outputs=args.rewrite_outputs)
    except TrainingInterrupted:  # a clean stop on a signal: its checkpoint is written and train said which file
        return 3
    return 0 if result.finished else 3  # 3: stopped early (signal or time budget); re-run to resume


def _parse_attributes(text: str) -> dict[str, str]:
    """'monsters=yes,water=no' -> {name: word}; names and words are checked by `generate`."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("write NAME=yes|no|open pairs separated by commas, e.g. 'monsters=yes,water=no'")
    from hmolqd.data.attributes import ASK_WORDS, ATTRIBUTES

    names = [name.strip() for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice; name each attribute once")
    out = {name.strip(): word.strip().lower() for name, word in pairs}
    for name, word in out.items():
        if name not in ATTRIBUTES or word not in ASK_WORDS:
            raise ValueError(f"{name}={word}: names are {', '.join(ATTRIBUTES)}; values {', '.join(ASK_WORDS)}")
    return out


def _sample(args: argparse.Namespace) -> int:
    # Every argument is checked before the model is loaded, so a typo costs no time.
    from hmolqd.sampling.generate import parse_doors, parse_stairs

    check.at_least("-n", args.n, 1, "rooms to generate")
    check.at_most("-n", args.n, check.MAX_SAMPLE_ROOMS, "rooms per call; run it again with another --seed for more")
    check.at_least("--steps", args.steps, 1, "sampling steps")
    check.at_least("--ncols", args.ncols, 1, "rooms per row of the picture")
    check.at_most("--ncols", args.ncols, check.MAX_NCOLS, "rooms per row of the picture")
    check.number("--guidance", args.guidance, 0, "classifier-free guidance scale")
    check.seed("--seed", args.seed)
    check.file_target("--out", args.out, ".png")
    doors = check.checked("--doors", args.doors, lambda v: parse_doors(v, 1)[0])  # (4,) bool in tiles.SIDES order
    stairs = check.checked("--stairs", args.stairs, lambda v: bool(parse_stairs(v, 1)[0]))
    attributes = check.checked("--attributes", args.attributes, _parse_attributes)
    check.model_file(args.model)

    from hmolqd.checkpointing.export import load_model
    from hmolqd.evaluation.report import save_sample_pages
    from hmolqd.sampling.generate import generate
    from hmolqd.training.outputs import condition_caption

    gen = load_model(args.model)
    if stairs is not None and not gen.config.model.cond_stairs:
        raise ConfigError(
            f"--stairs {args.stairs!r}: {args.model} was trained without the stairs condition (cond_stairs = false); "
            "leave --stairs out"
        )
    rooms = generate(
        gen,
        args.n,
        doors=doors,
        stairs=stairs,
        attributes=attributes,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
    )  # None = the model's own setting
    out = args.out or Path(args.model).with_name("samples.png")
    asked = condition_caption(None if doors is None else tuple(doors.tolist()))
    asked += "" if stairs is None else f"; stairs {'yes' if stairs else 'no'}"
    asked += "".join(f"; {name} {word}" for name, word in (attributes or {}).items())
    title = f"{args.n} generated rooms: {asked} (seed {args.seed})"
    pages = save_sample_pages(rooms, out, ncols=args.ncols, title=title)
    print(f"wrote {pages[0]}" if len(pages) == 1 else f"wrote {len(pages)} pages: {pages[0]} .. {pages[-1]}")
    return 0


def _dungeon(args: argparse.Namespace) -> int:
    from hmolqd.checkpointing.export import load_model
    from hmolqd.dungeon import DungeonConfig, format_summary, generate_dungeon, why_not_usable
    from hmolqd.dungeon.layout import MAX_ROOMS, read_layout
    from hmolqd.dungeon.sampler import MIN_ROOMS

    if args.graph is not None and args.rooms is not None:
        raise ConfigError("give --graph FILE.dot or --rooms N (a sampled layout), not both")
    if args.rooms is not None and args.rooms < MIN_ROOMS:
        raise ConfigError(
            f"--rooms {args.rooms}: a dungeon needs at least {MIN_ROOMS} rooms (start, a room, boss, goal)"
        )
    check.at_most("--rooms", args.rooms, MAX_ROOMS, "rooms of one dungeon; the largest real one has 66")
    if args.max_regenerations is not None and args.max_regenerations < 0:
        raise ConfigError(f"--max-regenerations {args.max_regenerations}: must be >= 0 (0 keeps the first rooms)")
    check.at_most("--max-regenerations", args.max_regenerations, 100, "rounds of regenerating the failing rooms")
    check.at_least("--steps", args.steps, 1, "sampling steps")
    check.seed("--seed", args.seed)
    check.folder_target("--out", args.out)
    check.model_file(args.model)
    out = args.out or args.model.with_name("dungeon")
    sampling = {} if args.steps is None else {"steps": args.steps}
    config = (
        DungeonConfig() if args.max_regenerations is None else DungeonConfig(max_regenerations=args.max_regenerations)
    )
    graph = read_layout(args.graph) if args.graph is not None else None  # a bad graph is said before the model loads
    dungeon = generate_dungeon(
        load_model(args.model), graph, rooms=args.rooms, seed=args.seed, out=out, config=config, **sampling
    )
    print(format_summary(dungeon))
    print(
        f"wrote {out}/dungeon.txt (VGLC text), dungeon.dot (graph with slots), dungeon.png (map), "
        "dungeon.json (summary)"
    )
    why = why_not_usable(dungeon)
    if why:  # the files stay: they show what went wrong
        print(
            f"dungeon: {why}. This is after {config.max_regenerations} rounds of making failing rooms again; try "
            "another --seed, a higher --max-regenerations, or a model trained longer",
            file=sys.stderr,
        )
        return 1
    return 0


# The subcommands: name -> handler (the parser in hmolqd.cli.parser gives each its arguments).
COMMANDS: dict[str, Command] = {
    "fetch-data": _fetch_data,
    "data-stats": _data_stats,
    "train": _train,
    "sample": _sample,
    "dungeon": _dungeon,
    "illuminate": illuminate_command.illuminate,
    "evaluate": _evaluate,
}


def build_parser() -> argparse.ArgumentParser:
    return cli_parser.build_parser(COMMANDS)


INTERRUPTED = 130  # 128 + SIGINT: the shell's exit status for a Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    command = None
    try:  # a Ctrl-C anywhere, even while torch is still being imported, ends with one line, not a traceback
        args = build_parser().parse_args(argv)
        command = args.command
        from hmolqd.checkpointing.fileformat import CheckpointError
        from hmolqd.data import VGLCFormatError
        from hmolqd.dungeon.layout import LayoutError

        try:
            return args.run(args)
        # Bad input, and an output path the OS refuses (a folder, no permission): one line naming it, exit 2.
        except (
            ConfigError,
            VGLCFormatError,
            CheckpointError,
            LayoutError,
            FileNotFoundError,
            PermissionError,
            IsADirectoryError,
            NotADirectoryError,
        ) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        # Training turns the first Ctrl-C into a clean stop with a checkpoint; this is one before it
        # started (start-up) or a second one: files are written atomically, so none is left half-written.
        after = "; re-run to go on (training resumes from its newest checkpoint, if any)" if command == "train" else ""
        print(f"error: {command or 'python -m hmolqd'} interrupted by SIGINT (Ctrl-C){after}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

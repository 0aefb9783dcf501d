"""Generation-quality report: our generator, the training rooms and the Markov reference, scored alike.

Every column is scored by `hmolqd.evaluation.metrics.evaluate_rooms` against the same training rooms:

- "model": `n` rooms from the generator, conditioned on door sides (and stairs, when the model takes
  them) drawn with replacement from the training rooms, so the conditions follow the training
  distribution; door adherence is measured against those requested doors.
- "training_set": the training rooms themselves (their own doors requested). `novel` is 0 there by
  definition (every room is its own nearest copy); the column shows what "real" looks like.
- "markov": `MarkovRoomGenerator` fit on the training rooms, sampled with the same drawn doors.
- "held_out" (when the held-out rooms are given; `run_evaluate` gives them): the rooms of the validation
  dungeons, which no model trained on, scored against the training rooms: the level a real Zelda dungeon
  reaches on every metric (its pattern KL, unseen patterns and novelty are what "as Zelda-like as real" means).

The reference set is the set the model was trained on: the training split of `val_dungeons`, plus
its mirrored copies when the saved config has `mirror_augment` (a generated mirror image of a
training room is then a copy, not a novel room).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from hmolqd.config import ConfigError
from hmolqd.data.playability import check_rooms, playable_mask
from hmolqd.device import resolve_device
from hmolqd.evaluation.baselines import MarkovRoomGenerator
from hmolqd.evaluation.metrics import evaluate_rooms
from hmolqd.models.room_model import RoomModel
from hmolqd.render import grid_to_rgb, save_png
from hmolqd.sampling.discrete import counting_redraws, use_training_rooms
from hmolqd.sampling.generate import generate, sampling_settings

# Rows of the table (keys of evaluate_rooms' dict) and its columns (report key, header).
TABLE_ROWS: tuple[str, ...] = (
    "playable",
    "novel_playable",
    "novel_playable_symmetric",
    "novel",
    "novel_interior",
    "interior_distance",
    "interior_far",
    "distinct",
    "diversity",
    "symmetric",
    "door_adherence",
    "tile_kl_train_gen",
    "pattern_kl_train_gen",
    "pattern_kl_gen_train",
    "unseen_patterns",
)
COLUMNS: tuple[tuple[str, str], ...] = (("model", "ours"), ("training_set", "training set"), ("markov", "Markov"))
HELD_OUT: tuple[str, str] = ("held_out", "held-out real")  # the optional reference column (see the module docstring)
DEFAULT_PNG = "evaluation_samples.png"
DEFAULT_JSON = "evaluation_report.json"
GRID_LIMIT = 128  # rooms drawn in the sample PNG (the metrics use all of them)
# A report part computed above this layer: (loaded model, data folder) -> JSON-able dict (see run_evaluate).
ReportSection = Callable[[RoomModel, Path], dict[str, Any]]


class DoorSource(Protocol):
    """Anything with training door sides `(N, 4)` bool and stairs `(N,)` bool, e.g. a `Corpus`."""

    doors: torch.Tensor
    stairs: torch.Tensor


class TrainingRooms(DoorSource, Protocol):
    """A `Corpus`-like training set: also its rooms `(N, 16, 11)` tile indices."""

    rooms: torch.Tensor


def _draw(doors: torch.Tensor, stairs: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    doors, stairs = torch.as_tensor(doors).cpu().bool(), torch.as_tensor(stairs).cpu().bool()
    if doors.dim() != 2 or doors.shape[1] != 4 or tuple(stairs.shape) != (doors.shape[0],):
        raise ValueError(
            "training conditions: expected doors (N, 4) and stairs (N,), "
            f"got {tuple(doors.shape)} and {tuple(stairs.shape)}"
        )
    if doors.shape[0] == 0:
        raise ValueError("training conditions: no training rooms to draw door conditions from")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pick = torch.randint(doors.shape[0], (n,), generator=torch.Generator().manual_seed(int(seed)))  # (n,)
    return doors[pick].clone(), stairs[pick].clone()


def draw_conditions(train: DoorSource, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` (doors `(n, 4)` bool, stairs `(n,)` bool) pairs of training rooms drawn with replacement (seeded).

    Doors and stairs are drawn together (one training room per row), so their joint law is kept.
    """
    return _draw(train.doors, train.stairs, n, seed)


def _sample_model(
    generator: RoomModel, train: torch.Tensor, doors: torch.Tensor, stairs: torch.Tensor, *, seed: int, sampling: Any
) -> tuple[torch.Tensor, float, float]:
    """(rooms `(n, 16, 11)` uint8, wall-clock seconds, the guards' redraws per room), the guards comparing with the
    training rooms `train` held here; stairs only to models that take them; `sampling`: generate's keywords."""
    use_training_rooms(generator, train)  # no second read of the corpus for the guards
    cond_stairs = stairs if generator.cfg.cond_stairs else None
    start = time.perf_counter()
    with counting_redraws() as counts:
        rooms = generate(generator, doors.shape[0], doors=doors, stairs=cond_stairs, seed=seed, **sampling)
    seconds = time.perf_counter() - start  # generate returns CPU rooms, so device work is finished
    return rooms, seconds, counts["redrawn"] / max(doors.shape[0], 1)


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with non-finite floats (diversity of < 2 rooms is NaN) replaced by None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def generation_metrics(
    generator: RoomModel,
    train_rooms: torch.Tensor,
    train_doors: torch.Tensor,
    train_stairs: torch.Tensor,
    n: int,
    *,
    seed: int,
    sampling: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`evaluate_rooms` of `n` generated rooms (conditions drawn from the training rooms, door adherence
    against them), plus `generation_seconds`. For the training loop's `sample_every` evaluations; the
    model samples with its run config's settings unless `sampling` overrides them."""
    if n < 1:
        raise ValueError(f"generation_metrics: n must be >= 1 (config key eval_samples), got {n}")
    doors, stairs = _draw(train_doors, train_stairs, n, seed)
    rooms, seconds, _ = _sample_model(generator, train_rooms, doors, stairs, seed=seed, sampling=sampling or {})
    out = evaluate_rooms(rooms, train_rooms, requested_doors=doors)
    out["generation_seconds"] = seconds
    return json_safe(out)


def _report_and_rooms(
    generator: RoomModel,
    corpus_train: TrainingRooms,
    *,
    n: int,
    seed: int,
    sampling: Mapping[str, Any],
    held_out: TrainingRooms | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    if n < 2:
        raise ValueError(f"evaluation_report: n must be >= 2 (diversity needs pairs of rooms), got {n}")
    train = check_rooms(corpus_train.rooms, "corpus_train.rooms")
    doors, stairs = draw_conditions(corpus_train, n, seed)
    rooms, gen_seconds, redraw_rate = _sample_model(generator, train, doors, stairs, seed=seed, sampling=sampling)
    start = time.perf_counter()
    markov_rooms = MarkovRoomGenerator().fit(train).sample(n, doors=doors, seed=seed)
    markov_seconds = time.perf_counter() - start
    report = {
        "settings": {
            "n": n,
            "seed": seed,
            "model_kind": generator.cfg.model_kind,
            **sampling_settings(generator, **sampling).as_keywords(),
            "train_rooms": int(train.shape[0]),
            "conditions": "door sides"
            + (" and stairs" if generator.cfg.cond_stairs else "")
            + " of training rooms drawn with replacement",
        },
        "timing": {
            "generation_seconds": gen_seconds,
            "rooms_per_second": n / gen_seconds if gen_seconds > 0 else None,
            "markov_seconds": markov_seconds,
            "redraw_rate": redraw_rate,  # rooms the copy guard drew again, per room asked (copy_guard)
        },
        "model": evaluate_rooms(rooms, train, requested_doors=doors),
        "training_set": evaluate_rooms(train, train, requested_doors=corpus_train.doors),
        "markov": evaluate_rooms(markov_rooms, train, requested_doors=doors),
        "rooms": {"model": n, "training_set": int(train.shape[0]), "markov": n},
    }
    if held_out is not None:
        report[HELD_OUT[0]] = evaluate_rooms(held_out.rooms, train, requested_doors=held_out.doors)
        report["rooms"][HELD_OUT[0]] = int(held_out.rooms.shape[0])
    return json_safe(report), rooms


def evaluation_report(
    generator: RoomModel,
    corpus_train: TrainingRooms,
    *,
    n: int = 1000,
    seed: int = 0,
    held_out: TrainingRooms | None = None,
    **sampling: Any,
) -> dict[str, Any]:
    """One JSON-able report: settings, timing and the "model" / "training_set" / "markov" metric dicts, and
    "held_out" when the held-out dungeons' rooms are given.

    `corpus_train` (and `held_out`) need `.rooms` `(N, 16, 11)`, `.doors` `(N, 4)` and `.stairs` `(N,)` (a `Corpus`);
    `sampling` overrides the model's own sampling settings (generate's keywords).
    """
    return _report_and_rooms(generator, corpus_train, n=n, seed=seed, sampling=sampling, held_out=held_out)[0]


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report_table(report: dict[str, Any]) -> str:
    """Markdown table: one row per metric of `TABLE_ROWS`, columns ours / training set / Markov (/ held-out real,
    when the report has it); then one small table per extra section (`run_evaluate`'s `sections`)."""
    missing = [key for key, _ in COLUMNS if key not in report]
    if missing:
        raise ValueError(
            f"format_report_table: report lacks column(s) {missing}; expected keys {[k for k, _ in COLUMNS]}"
        )
    columns = COLUMNS + ((HELD_OUT,) if HELD_OUT[0] in report else ())
    lines = ["| metric | " + " | ".join(h for _, h in columns) + " |", "|---|" + "---:|" * len(columns)]
    counts = report.get("rooms", {})
    lines.append("| rooms | " + " | ".join(str(counts.get(k, "n/a")) for k, _ in columns) + " |")
    for key in TABLE_ROWS:
        lines.append(f"| {key} | " + " | ".join(_cell(report[col].get(key)) for col, _ in columns) + " |")
    for name in report.get("sections", []):
        lines += ["", f"| {name} | value |", "|---|---:|"]
        for key, value in report[name].items():
            if isinstance(value, (bool, int, float, str)) or value is None:
                shown = (
                    value
                    if isinstance(value, (bool, str))
                    else _cell(value)
                    if isinstance(value, float) or value is None
                    else value
                )
                lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


# Pixels per tile on the sample sheets: a room is 128 x 88 px, large enough to tell its tiles apart.
SHEET_SCALE = 8


def save_sample_grid(
    rooms: torch.Tensor,
    path: str | Path,
    *,
    marks_nonplayable: bool = True,
    ncols: int = 16,
    limit: int | None = GRID_LIMIT,
    title: str | None = None,
) -> Path:
    """PNG of the first `limit` rooms (None = all), `ncols` per row, non-playable ones outlined in red;
    a legend of the tiles (and of the red outline) beside it. `sample_*.png` and `samples.png` use it too."""
    rooms = check_rooms(rooms)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        rooms = rooms[:limit]
    marks = ~playable_mask(rooms) if marks_nonplayable else None
    if title is None:
        title = f"{rooms.shape[0]} rooms" + ("; red outline = not playable" if marks_nonplayable else "")
    return save_png(
        grid_to_rgb(rooms, ncols=ncols, marks=marks, scale=SHEET_SCALE),
        path,
        legend=True,
        title=title,
        mark_label="not playable" if marks_nonplayable else None,
    )


PAGE_ROOMS = 600  # rooms per PNG page of `save_sample_pages` (one page of 600 rooms peaks at ~0.5 GB resident, CPU)


def save_sample_pages(
    rooms: torch.Tensor, path: str | Path, *, ncols: int, title: str, page_rooms: int | None = None
) -> list[Path]:
    """`save_sample_grid` of every room, `page_rooms` (default PAGE_ROOMS) per PNG so that memory stays bounded
    for any count: one page is `path` itself; more are `<stem>_001.png`, `<stem>_002.png`, ... beside it."""
    path = Path(path)
    page_rooms = PAGE_ROOMS if page_rooms is None else page_rooms
    if page_rooms < 1:
        raise ValueError(f"page_rooms must be >= 1, got {page_rooms}")
    pages = -(-rooms.shape[0] // page_rooms)
    if pages <= 1:
        return [save_sample_grid(rooms, path, ncols=ncols, limit=None, title=title)]
    width = max(3, len(str(pages)))
    written = []
    for k in range(pages):
        part = rooms[k * page_rooms : (k + 1) * page_rooms]
        first = k * page_rooms + 1
        name = path.with_name(f"{path.stem}_{k + 1:0{width}d}{path.suffix}")
        where = f"page {k + 1} of {pages}: rooms {first}-{first + len(part) - 1}"
        written.append(save_sample_grid(part, name, ncols=ncols, limit=None, title=f"{title}; {where}"))
    return written


@dataclass(frozen=True)
class EvaluateOptions:
    """What `run_evaluate` samples with and adds to its report, and how its errors name its arguments.

    `sampling` overrides the saved config's sampling settings (generate's keywords: steps, guidance, eta,
    door_guidance, sampler, temperature, ...; a key left out or None keeps the model's). `sections` adds
    report parts that layers above this one compute (the CLI adds `hmolqd.dungeon`'s "dungeon"): each is
    called with the loaded model and the data folder and its dict is stored under its name. `names` maps an
    argument (model_path, data_dir, samples, steps, device) to what the caller's user calls it in error
    messages (the CLI: its flags); an argument left out is named as itself.
    """

    sampling: Mapping[str, Any] = field(default_factory=dict)
    sections: Mapping[str, ReportSection] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, argument: str) -> str:
        return self.names.get(argument, argument)


def _checked_arguments(model_path: Path, samples: int, options: EvaluateOptions) -> None:
    """The arguments' rules, before anything is loaded (a typo costs no time)."""
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{options.name('model_path')} {model_path}: no such file (expected model_final.pt from training)"
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(
            f"{options.name('samples')} {samples!r}: must be an integer >= 2 (diversity needs pairs of rooms)"
        )
    steps = options.sampling.get("steps")
    if steps is not None and steps < 1:
        raise ConfigError(f"{options.name('steps')} {steps!r}: must be >= 1 (sampling steps)")


def run_evaluate(
    model_path: str | Path,
    data_dir: str | Path | None,
    samples: int,
    seed: int,
    out_png: str | Path | None = None,
    out_json: str | Path | None = None,
    *,
    device: str = "auto",
    options: EvaluateOptions | None = None,
) -> dict[str, Any]:
    """Load `model_final.pt`, rebuild its training split, write the sample PNG and the report JSON.

    out_png / out_json default to evaluation_samples.png / evaluation_report.json beside the model; data_dir
    None takes the `data_dir` stored with the model when that folder exists here, else discovers the corpus
    (`find_data_dir`). `options` (see `EvaluateOptions`) overrides sampling settings, adds report sections
    (their names listed in "sections") and names the arguments in error messages.
    """
    from hmolqd.atomic import atomic_write_text
    from hmolqd.checkpointing.export import load_model
    from hmolqd.data import augment_mirror, find_data_dir, load_corpus, split_corpus

    options = options or EvaluateOptions()
    model_path = Path(model_path)
    _checked_arguments(model_path, samples, options)
    sampling = dict(options.sampling)
    target = resolve_device(device, key=options.name("device"))
    data_key = options.name("data_dir")
    root = find_data_dir(data_dir, key=data_key) if data_dir is not None else None  # a wrong folder costs no time
    generator = load_model(model_path)
    cfg = generator.config  # the run's whole Config, saved in the file: split and sampling defaults
    if root is None:  # no data_dir: the folder the model was trained on, where it exists here; else discovered
        stored = cfg.data.data_dir
        root = find_data_dir(stored if stored is not None and Path(stored).is_dir() else None, key=data_key)
    train, held_out = split_corpus(load_corpus(root), cfg.data.val_dungeons)
    if cfg.data.mirror_augment:
        train = augment_mirror(train)
    generator.to(target)
    report, rooms = _report_and_rooms(generator, train, n=samples, seed=seed, sampling=sampling, held_out=held_out)
    out_png = Path(out_png) if out_png else model_path.parent / DEFAULT_PNG
    out_json = Path(out_json) if out_json else model_path.parent / DEFAULT_JSON
    report["settings"].update(
        model=str(model_path),
        data_dir=str(root),
        val_dungeons=list(cfg.data.val_dungeons),
        mirror_augment=cfg.data.mirror_augment,
        device=str(target),
    )
    report["files"] = {"png": str(out_png), "json": str(out_json)}
    for name, section in options.sections.items():
        report[name] = json_safe(section(generator, root))
    report["sections"] = list(options.sections)
    save_sample_grid(
        rooms,
        out_png,
        title=f"{model_path.name}: first {min(len(rooms), GRID_LIMIT)} of {samples} rooms (seed {seed}); "
        "red outline = not playable",
    )
    atomic_write_text(out_json, json.dumps(report, indent=1, allow_nan=False) + "\n")
    return report

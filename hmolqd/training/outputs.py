"""What a run leaves in `output_dir`, and loading the exported generator back.

config.json              the resolved config (nested, as in every checkpoint)
training_history.json    one record per epoch (written atomically after each epoch by the trainer)
training_curves.png      losses and learning rate per stage
model_final.pt           inference-only: VQ-VAE, the denoiser that samples (EMA copy unless use_ema is false),
                         config; `hmolqd.load_model(path)`
sample_*.png             grids of generated rooms, each titled with the door condition it was asked for
                         (sides as seen on screen), a tile legend, and unplayable rooms outlined in red
h_molqd_outputs.zip      all of the above plus the checkpoints and the illuminate archive's summary (see `zip_outputs`)
run.json                 the run these outputs belong to (another run's outputs are set aside first: `claim_output_dir`)
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hmolqd.atomic import atomic_write, atomic_write_text
from hmolqd.checkpointing.export import export_model
from hmolqd.checkpointing.fileformat import LATEST, CheckpointError, mib
from hmolqd.checkpointing.identity import RunInfo, read_run_info, write_run_info
from hmolqd.checkpointing.lineage import set_aside
from hmolqd.checkpointing.lock import LOCK_NAME, RUN_INFO_NAME
from hmolqd.config import Config, denoiser_stage, stage_names
from hmolqd.evaluation.report import save_sample_grid
from hmolqd.models.room_model import RoomModel
from hmolqd.render import describe_doors
from hmolqd.sampling.generate import generate
from hmolqd.training.history import plot_curves

FINAL_MODEL = "model_final.pt"
ZIP_NAME = "h_molqd_outputs.zip"
# The door conditions shown in the sample grids: (file suffix, doors in tiles.SIDES order or None = unconditional).
# Suffixes name the sides as seen on screen (hmolqd.render.TEXT_TO_SCREEN_SIDE): text top/bottom = west/east.
SAMPLE_CONDITIONS: tuple[tuple[str, tuple[bool, bool, bool, bool] | None], ...] = (
    ("unconditional", None),
    ("west_east", (True, True, False, False)),
    ("north_south", (False, False, True, True)),
    ("all_sides", (True, True, True, True)),
)


def condition_caption(doors: tuple[bool, ...] | None) -> str:
    """What a sample grid asked for, with the sides named as on screen: 'doors north, south; none east, west'."""
    return "unconditional (any doors)" if doors is None else describe_doors(doors)


def write_config(cfg: Config, output_dir: str | Path) -> Path:
    path = Path(output_dir) / "config.json"
    atomic_write_text(path, cfg.to_json() + "\n")
    return path


def export_final(gen: RoomModel, output_dir: str | Path, history: list[dict[str, Any]] | None = None) -> Path:
    """model_final.pt, with the epochs each stage trained where `history` is known (a model whose denoiser never
    trained is then refused by load_model)."""
    trained = None if history is None else {s: sum(1 for r in history if r.get("stage") == s) for s in stage_names()}
    return export_model(gen, Path(output_dir) / FINAL_MODEL, trained)


def write_samples(gen: RoomModel, cfg: Config, output_dir: str | Path, n: int = 24) -> list[Path]:
    """One `sample_<condition>.png` grid per entry of SAMPLE_CONDITIONS, generated with the run's sampling keys."""
    paths = []
    for i, (name, doors) in enumerate(SAMPLE_CONDITIONS):
        rooms = generate(
            gen,
            n,
            doors=None if doors is None else torch.tensor(doors),
            seed=cfg.run.seed + i,
            **dataclasses.asdict(cfg.run.sampling),
        )
        title = f"{n} generated rooms: {condition_caption(doors)} (seed {cfg.run.seed + i})"
        paths.append(save_sample_grid(rooms, Path(output_dir) / f"sample_{name}.png", ncols=6, limit=None, title=title))
    return paths


SAME_FILES_NOTE = "checkpoints/SAME_FILES.txt"  # in the zip: checkpoint names that are hard links of a stored entry


def zip_outputs(output_dir: str | Path, checkpoint_dir: str | Path) -> Path:
    """`h_molqd_outputs.zip`: the run's outputs, its checkpoint files and run.json, written atomically.

    Every file is stored once, whichever folder lists it (output_dir may be checkpoint_dir); the lock files,
    temp files and what `previous_runs/` keeps are never stored. `checkpoint_latest.pt` and every stage's
    `checkpoint_*best.pt` are always entries under their own names, even where they are one file on disk (a
    hard link): a zip entry cannot share another's bytes, and these are the names a user unzips to resume or
    to keep the best model, so their bytes are stored twice then. An epoch or step file that is a hard link of
    a stored entry is one line in checkpoints/SAME_FILES.txt instead. `.pt` files are stored, not deflated.
    Of the notebook's archive (`illuminate/`, `hmolqd.notebook.illuminate_dungeons`) the zip holds
    `ILLUMINATE_FILES` (summary, heatmap, elite sheet and `archive.pt`, from which every elite's files can be
    written again), not the per-elite folder `illuminate/elites/`. A failure to write the zip (a full disk)
    is a CheckpointError of one line; the files it would hold are untouched.
    """
    out, ckpt = Path(output_dir), Path(checkpoint_dir)
    names = sorted(
        (p for p in ckpt.glob("checkpoint_*.pt") if p.is_file()), key=lambda p: (not _named_entry(p), p.name)
    )
    stored: dict[tuple[int, int], Path] = {}
    files: list[tuple[Path, Path]] = []
    same: list[str] = []
    for src in names + [ckpt / RUN_INFO_NAME]:
        if not src.is_file():
            continue
        st = src.stat()
        first = stored.setdefault((st.st_dev, st.st_ino), src)
        if first != src and not _named_entry(src):
            same.append(
                f"{src.name}: the same file as {first.name} (a hard link in checkpoint_dir); "
                "copy it to restore the name"
            )
            continue
        files.append((src, Path("checkpoints") / src.name))
    for src in sorted(out.iterdir()):
        st = src.stat() if src.is_file() else None
        if (
            st is None
            or src.name in (ZIP_NAME, LOCK_NAME)
            or src.name.startswith(".")
            or (st.st_dev, st.st_ino) in stored
        ):
            continue
        stored[(st.st_dev, st.st_ino)] = src
        files.append((src, Path("outputs") / src.name))
    for name in ILLUMINATE_FILES:
        if (src := out / ILLUMINATE_DIR / name).is_file():
            files.append((src, Path("outputs") / ILLUMINATE_DIR / name))

    def write(f: Any) -> None:
        # .pt files are already compressed zip archives; storing them avoids minutes of deflate on Kaggle.
        with zipfile.ZipFile(f, "w") as zf:
            for src, arc in files:
                zf.write(src, arc, compress_type=zipfile.ZIP_STORED if src.suffix == ".pt" else zipfile.ZIP_DEFLATED)
            if same:
                zf.writestr(SAME_FILES_NOTE, "\n".join(same) + "\n", compress_type=zipfile.ZIP_DEFLATED)

    path = out / ZIP_NAME
    try:
        atomic_write(path, write)
    except OSError as err:  # a full disk, say: one line (`hmolqd.cli`), and a re-run writes only what is missing
        size = sum(src.stat().st_size for src, _ in files)
        raise CheckpointError(
            f"writing {path} failed: {err.strerror or err} (its {len(files)} files are {mib(size)}); they are "
            "intact: free space and re-run to write the zip"
        ) from err
    return path


def _named_entry(path: Path) -> bool:
    """latest and the bests: stored under their own names in the zip whatever they share on disk."""
    return path.name == LATEST or path.name.endswith("best.pt")


# ---------------------------------------------------------------- whose outputs these are

GENERATED_DUNGEON = "dungeon_generated"  # stem of the files hmolqd.notebook.draw_dungeon writes into output_dir
ILLUMINATE_DIR = "illuminate"  # the folder of hmolqd.notebook.illuminate_dungeons' archive (built from model_final.pt)
ILLUMINATE_FILES = ("summary.json", "heatmap.png", "elites.png", "archive.pt")  # of it, in the zip (zip_outputs)
# after the last stage
_FINAL_OUTPUTS = (FINAL_MODEL, ZIP_NAME, "sample_*.png", f"{GENERATED_DUNGEON}.*", ILLUMINATE_DIR)
_RUN_OUTPUTS = ("config.json", "training_history.json", "training_curves.png", *_FINAL_OUTPUTS)


def _present(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file() or p.name == ILLUMINATE_DIR})


def claim_output_dir(
    output_dir: str | Path, checkpoint_dir: str | Path, run_id: str, previous: RunInfo | None
) -> list[str]:
    """Before a training writes into output_dir: set aside another run's outputs (into previous_runs/, never
    replaced; `previous` = output_dir's run.json as it was before this training started, None for none) and
    record this run in output_dir/run.json. Returns what it did, to say."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    if previous is None or previous.run_id != run_id:
        files = _present(out, _RUN_OUTPUTS)
        if files and (out / RUN_INFO_NAME).is_file() and previous is not None:
            files.append(out / RUN_INFO_NAME)
        label = previous.run_id[:8] if previous is not None else "earlier-outputs"
        if (target := set_aside(out, files, label)) is not None:
            notes.append(
                f"output_dir {out} held the outputs of {'run ' + label if previous else 'an earlier run'}: "
                f"set aside {len(files)} file(s) ({', '.join(p.name for p in files)}) into {target} (kept)"
            )
    if (previous is None or previous.run_id != run_id) and Path(checkpoint_dir).resolve() != out.resolve():
        # once per run: re-runs leave it
        write_run_info(out, read_run_info(checkpoint_dir) or RunInfo.new(run_id=run_id))
    return notes


def set_aside_final_outputs(output_dir: str | Path, run_id: str) -> str | None:
    """Training goes on after an earlier finish (more epochs): that finish's model, samples and zip no longer
    describe the run, so they leave the top of output_dir (kept in previous_runs/) until the new finish."""
    out = Path(output_dir)
    files = _present(out, _FINAL_OUTPUTS)
    target = set_aside(out, files, f"{run_id[:8]}-earlier-finish")
    return (
        None
        if target is None
        else (
            f"training continues after an earlier finish: its final outputs "
            f"({', '.join(p.name for p in files)}) were set aside into {target} (kept)"
        )
    )


def finish(
    gen: RoomModel,
    cfg: Config,
    history: list[dict[str, Any]],
    *,
    final: bool,
    log: Callable[[str], None],
    only_missing: bool = False,
) -> list[Path]:
    """Curves always; after the last stage also the final model, sample grids and the zip. `only_missing` (a
    re-run of a finished training): only the files that are not there, and the zip (so a zip that a full disk
    stopped is written again without writing model_final.pt again)."""
    out = Path(cfg.paths.output_dir)
    written = []
    if not (only_missing and (out / "training_curves.png").is_file()):
        written.append(plot_curves(history, out / "training_curves.png"))
    if final:
        if not (only_missing and (out / FINAL_MODEL).is_file()):
            written.append(export_final(gen, out, history))
        denoiser = denoiser_stage()
        samples = [out / f"sample_{name}.png" for name, _ in SAMPLE_CONDITIONS]
        if only_missing and all(p.is_file() for p in samples):
            pass  # the grids are there: nothing to draw
        elif any(r.get("stage") == denoiser.name for r in history):
            written += write_samples(gen, cfg, out)
        else:  # num_epochs=0: a denoiser that never trained draws noise, not rooms
            log(
                f"no sample grids: the {denoiser.name} stage trained 0 epochs ({denoiser.epochs_key}=0), "
                f"so {FINAL_MODEL} cannot generate rooms"
            )
        written.append(zip_outputs(out, cfg.paths.checkpoint_dir))
    for path in written:
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return written

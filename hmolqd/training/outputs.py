"""What a run leaves in `output_dir`, and loading the exported generator back.

    config.json              the resolved config (nested, as in every checkpoint)
    training_history.json    one record per epoch (written atomically after each epoch by the trainer)
    training_curves.png      losses and learning rate per stage
    model_final.pt           inference-only: VQ-VAE, denoiser, EMA denoiser, config; `hmolqd.load_model(path)`
    sample_*.png             grids of generated rooms, each titled with the door condition it was asked for
                             (sides as seen on screen), a tile legend, and unplayable rooms outlined in red
    h_molqd_outputs.zip      all of the above plus the checkpoints, each distinct file once (see `zip_outputs`)
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hmolqd.atomic import atomic_write, atomic_write_text
from hmolqd.checkpointing.export import export_model
from hmolqd.config import Config
from hmolqd.evaluation.report import save_sample_grid
from hmolqd.models.room_model import RoomModel
from hmolqd.render import describe_doors
from hmolqd.sampling.generate import generate, sampling_settings
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


def export_final(gen: RoomModel, output_dir: str | Path) -> Path:
    return export_model(gen, Path(output_dir) / FINAL_MODEL)


def write_samples(gen: RoomModel, cfg: Config, output_dir: str | Path, n: int = 24) -> list[Path]:
    """One `sample_<condition>.png` grid per entry of SAMPLE_CONDITIONS, generated with the run's sampling keys."""
    paths = []
    for i, (name, doors) in enumerate(SAMPLE_CONDITIONS):
        rooms = generate(gen, n, doors=None if doors is None else torch.tensor(doors), seed=cfg.run.seed + i,
                         **sampling_settings(cfg.run))
        title = f"{n} generated rooms: {condition_caption(doors)} (seed {cfg.run.seed + i})"
        paths.append(save_sample_grid(rooms, Path(output_dir) / f"sample_{name}.png", ncols=6, limit=None, title=title))
    return paths


SAME_FILES_NOTE = "checkpoints/SAME_FILES.txt"  # in the zip: checkpoint names that are hard links of a stored entry
_CHECKPOINT_ORDER = ("checkpoint_latest.pt",)  # of several names of one file, latest is the one stored, then best, then the rest


def zip_outputs(output_dir: str | Path, checkpoint_dir: str | Path) -> Path:
    """`h_molqd_outputs.zip`: every file of output_dir (but the zip), the checkpoint files and run.json, written atomically.

    Each distinct file is stored once: checkpoint names that are hard links of one file (latest / epoch_N / best
    of one save) become one entry plus a line in checkpoints/SAME_FILES.txt. `.pt` files are stored, not deflated.
    """
    out, ckpt = Path(output_dir), Path(checkpoint_dir)
    files = [(p, Path("outputs") / p.name) for p in sorted(out.iterdir()) if p.is_file() and p.name != ZIP_NAME and not p.name.startswith(".")]
    names = sorted(ckpt.glob("checkpoint_*.pt"), key=lambda p: (p.name not in _CHECKPOINT_ORDER, not p.name.endswith("best.pt"), p.name))
    stored: dict[tuple[int, int], Path] = {}
    same: list[str] = []
    for src in names + [ckpt / "run.json"]:
        if not src.is_file():
            continue
        st = src.stat()
        if (st.st_dev, st.st_ino) in stored:
            same.append(f"{src.name}: the same file as {stored[(st.st_dev, st.st_ino)].name} (a hard link in checkpoint_dir); copy it to restore the name")
            continue
        stored[(st.st_dev, st.st_ino)] = src
        files.append((src, Path("checkpoints") / src.name))

    def write(f: Any) -> None:
        # .pt files are already compressed zip archives; storing them avoids minutes of deflate on Kaggle.
        with zipfile.ZipFile(f, "w") as zf:
            for src, arc in files:
                zf.write(src, arc, compress_type=zipfile.ZIP_STORED if src.suffix == ".pt" else zipfile.ZIP_DEFLATED)
            if same:
                zf.writestr(SAME_FILES_NOTE, "\n".join(same) + "\n", compress_type=zipfile.ZIP_DEFLATED)

    path = out / ZIP_NAME
    atomic_write(path, write)
    return path


def finish(gen: RoomModel, cfg: Config, history: list[dict[str, Any]], *, final: bool, log: Callable[[str], None]) -> list[Path]:
    """Curves always; after the last stage also the final model, sample grids and the zip."""
    out = Path(cfg.paths.output_dir)
    written = [plot_curves(history, out / "training_curves.png")]
    if final:
        written.append(export_final(gen, out))
        written += write_samples(gen, cfg, out)
        written.append(zip_outputs(out, cfg.paths.checkpoint_dir))
    for path in written:
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return written

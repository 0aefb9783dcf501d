"""What a run leaves in `output_dir`, and loading the exported generator back.

    config.json              the resolved config (nested, as in every checkpoint)
    training_history.json    one record per epoch (written atomically after each epoch by the trainer)
    training_curves.png      losses and learning rate per stage
    model_final.pt           inference-only: VQ-VAE, denoiser, EMA denoiser, config; `hmolqd.load_model(path)`
    sample_*.png             grids of generated rooms, each with the door condition it was asked for
    h_molqd_outputs.zip      all of the above plus the checkpoints
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
from hmolqd.data.tiles import SIDES
from hmolqd.models.room_model import RoomModel
from hmolqd.render import grid_to_rgb, save_png
from hmolqd.sampling.generate import generate
from hmolqd.training.history import plot_curves

FINAL_MODEL = "model_final.pt"
ZIP_NAME = "h_molqd_outputs.zip"
# The door conditions shown in the sample grids: (file suffix, doors in SIDES order or None = unconditional).
SAMPLE_CONDITIONS: tuple[tuple[str, tuple[bool, bool, bool, bool] | None], ...] = (
    ("unconditional", None),
    ("top_bottom", (True, True, False, False)),
    ("left_right", (False, False, True, True)),
    ("all_sides", (True, True, True, True)),
)


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
        rooms = generate(gen, n, doors=None if doors is None else torch.tensor(doors), steps=cfg.run.sample_steps,
                         guidance=cfg.run.guidance_scale, eta=cfg.run.ddim_eta, seed=cfg.run.seed + i,
                         door_guidance=cfg.run.door_guidance)
        asked = "unconditional" if doors is None else "doors on text sides " + ", ".join(s for s, d in zip(SIDES, doors) if d)
        paths.append(save_png(grid_to_rgb(rooms, ncols=6), Path(output_dir) / f"sample_{name}.png", title=f"{n} generated rooms: {asked}"))
    return paths


def zip_outputs(output_dir: str | Path, checkpoint_dir: str | Path) -> Path:
    """`h_molqd_outputs.zip`: every file of output_dir (but the zip) and the checkpoint files, written atomically."""
    out, ckpt = Path(output_dir), Path(checkpoint_dir)
    files = [(p, Path("outputs") / p.name) for p in sorted(out.iterdir()) if p.is_file() and p.name != ZIP_NAME and not p.name.startswith(".")]
    files += [(p, Path("checkpoints") / p.name) for p in sorted(ckpt.glob("checkpoint_*.pt"))]

    def write(f: Any) -> None:
        # .pt files are already compressed zip archives; storing them avoids minutes of deflate on Kaggle.
        with zipfile.ZipFile(f, "w") as zf:
            for src, arc in files:
                zf.write(src, arc, compress_type=zipfile.ZIP_STORED if src.suffix == ".pt" else zipfile.ZIP_DEFLATED)

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

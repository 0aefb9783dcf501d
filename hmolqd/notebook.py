"""Small helpers the notebooks call, so that their cells hold only configuration, calls and displays.

`train_h_molqd_kaggle.ipynb` uses, in cell order: `notebook_config` + `environment_report` (setup and
configuration), `data_summary` + `render_dungeon` (the corpus), `resume_status` (which checkpoint a run
will resume from), `training_summary` (after `hmolqd.training.loop.train`), `show_image` / `show_samples`
(curves and sample grids inline), `draw_dungeon` (one whole generated dungeon) and `list_output_files`
(what to download). Each returns text or a path; the notebook prints or shows it. Nothing here trains or
deletes anything.
"""

from __future__ import annotations

import json
import platform
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hmolqd.checkpointing.resume import find_for_config
from hmolqd.config import (
    COMMENT_PREFIX,
    PRESETS_DIR,
    Config,
    ConfigError,
    kaggle_working,
)
from hmolqd.data import (
    DataNotFoundError,
    VGLCFormatError,
    corpus_stats,
    find_data_dir,
    format_stats,
    load_corpus,
    load_graphs,
)
from hmolqd.data.vglc import Corpus
from hmolqd.device import resolve_device
from hmolqd.render import dungeon_to_rgb, save_png
from hmolqd.training.outputs import (
    FINAL_MODEL,
    GENERATED_DUNGEON,
    ILLUMINATE_DIR,
    SAMPLE_CONDITIONS,
    ZIP_NAME,
    condition_caption,
    zip_outputs,
)
from hmolqd.training.runtime import (
    UnsupportedGPUError,
    amp_dtype_for,
    check_gpu_supported,
)

__all__ = [
    "data_summary",
    "draw_dungeon",
    "environment_report",
    "list_output_files",
    "notebook_config",
    "render_dungeon",
    "resume_status",
    "sample_captions",
    "show_image",
    "show_samples",
    "training_summary",
]

_AMP_NAMES = {None: "off (fp32)", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}


# ---------------------------------------------------------------- configuration


def notebook_config(
    config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, preset: str | None = None
) -> Config:
    """The notebook's `CONFIG`, then the keys a preset sets (if `preset`), then `overrides`; paths resolved.

    A preset replaces only the keys its JSON file names (`hmolqd/presets/<preset>.json`), so CONFIG's paths
    and resume settings stay. Any unknown key is a ConfigError naming it.
    """
    flat = dict(config)
    if preset is not None:
        Config.preset(preset)  # validates the name (the error lists the available presets) and the values
        preset_keys = json.loads((PRESETS_DIR / f"{preset}.json").read_text(encoding="utf-8"))
        flat.update({k: v for k, v in preset_keys.items() if k != "name" and not k.startswith(COMMENT_PREFIX)})
        flat["name"] = preset_keys.get("name", preset)
    flat.update(overrides or {})
    return Config.from_flat(flat).resolved()


def _gpu_lines(cfg: Config) -> tuple[list[str], torch.device | None, str | None]:
    """Lines about the GPU(s), the device training will use, and why that device cannot be used (or None)."""
    lines = []
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(i)
        lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}, compute capability {major}.{minor}")
    lines = lines or ["GPU: none visible (torch.cuda.is_available() is False)"]
    try:
        dev = resolve_device(cfg.run.device)
    except ConfigError as err:
        return lines, None, str(err)
    if dev.type != "cuda":
        return lines, dev, None
    try:
        check_gpu_supported(dev)
    except UnsupportedGPUError as err:
        return lines, None, f"UNSUPPORTED GPU: {err}"
    return lines, dev, None


def environment_report(cfg: Config) -> str:
    """Python/torch/CUDA versions, GPUs, the device and AMP dtype training will use, and the resolved paths.

    An unsupported GPU (e.g. a P100 under a torch build without sm_60) is reported on a line starting with
    'UNSUPPORTED GPU:' that says which accelerator to choose; training itself would stop with that error.
    """
    cfg = cfg.resolved()
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    lines = [f"python {platform.python_version()}, torch {torch.__version__} ({build})"]
    gpu_lines, dev, problem = _gpu_lines(cfg)
    lines += gpu_lines
    if problem is not None:
        lines += [problem, f"device: cannot train on {cfg.run.device!r} (see above)"]
    else:
        amp = _AMP_NAMES[amp_dtype_for(dev, cfg.train.use_amp)]
        lines += [f"device: {dev} (config device={cfg.run.device!r})", f"AMP: {amp} (use_amp={cfg.train.use_amp})"]
    lines.append(f"on Kaggle: {'yes' if kaggle_working().is_dir() else 'no'}")
    try:
        data = str(find_data_dir(cfg.data.data_dir))
    except DataNotFoundError as err:
        data = f"NOT FOUND - {err}"
    lines += [
        f"data_dir: {data}",
        f"checkpoint_dir: {Path(cfg.paths.checkpoint_dir).resolve()}",
        f"output_dir: {Path(cfg.paths.output_dir).resolve()}",
        f"resume_from: {cfg.paths.resume_from}  auto_resume: {cfg.run.auto_resume}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- data


def data_summary(cfg: Config) -> tuple[Path, Corpus, str]:
    """Find and load the VGLC corpus: (data folder, corpus, statistics text with the dungeon graphs)."""
    data_dir = find_data_dir(cfg.data.data_dir)
    corpus = load_corpus(data_dir)
    try:
        graphs, note = load_graphs(data_dir), ""
    except VGLCFormatError as err:  # training needs only the rooms; the graphs add statistics
        graphs, note = None, f"\n(no dungeon graph statistics: {err})"
    return data_dir, corpus, f"VGLC Zelda corpus: {data_dir}\n" + format_stats(corpus_stats(corpus, graphs)) + note


def render_dungeon(corpus: Corpus, dungeon: str, path: str | Path) -> Path:
    """The map of one real dungeon (its rooms at their VGLC slots) as a PNG with a tile legend."""
    if dungeon not in corpus.dungeons:
        raise ConfigError(f"dungeon {dungeon!r} is not in the corpus; choose one of {', '.join(corpus.dungeons)}")
    idx = [i for i, m in enumerate(corpus.meta) if m.dungeon == dungeon]
    rows = [corpus.meta[i].slot_row for i in idx]
    cols = [corpus.meta[i].slot_col for i in idx]
    rgb = dungeon_to_rgb(corpus.rooms[idx], rows, cols)
    return save_png(rgb, path, legend=True, title=f"{dungeon} (VGLC, {len(idx)} rooms)")


# ---------------------------------------------------------------- resume and training


def resume_status(cfg: Config) -> str:
    """Which checkpoint a run of `cfg` would resume from, as `train` will report it, or why none.

    Reads checkpoints only: nothing is copied, moved, locked or written (a previous output under the Kaggle input
    is reported where it lies; `train` copies it in). A missing or invalid `resume_from`, or a directory holding
    only another run's checkpoints, raises CheckpointError (training would too).
    """
    found = find_for_config(cfg)
    if found.checkpoint is None:
        return found.message
    done = _epochs_by_stage(found.checkpoint.get("history", []))
    trained = (
        "; ".join(f"{stage}: epochs {', '.join(map(str, epochs))}" for stage, epochs in done.items())
        or "no epoch finished yet"
    )
    return f"{found.message}\nalready trained: {trained}"


def _epochs_by_stage(history: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for record in history:
        out.setdefault(str(record.get("stage")), []).append(int(record.get("epoch", 0)))
    return out


def training_summary(result: Any) -> str:
    """One paragraph about a `hmolqd.training.loop.TrainResult`: finished or why it stopped, resume source, epochs."""
    head = (
        "training finished: every stage ran to its last epoch"
        if result.finished
        else (
            f"training stopped early ({result.stopped}); checkpoint_latest.pt is saved - "
            "run the notebook again to resume"
        )
    )
    if getattr(result, "already_finished", False):
        head = (
            "training already finished before this run: nothing was trained, and outputs already written were left as "
            "they are (train(cfg, rewrite_outputs=True) writes them again)"
        )
    source = f"resumed from {result.resumed_from}" if result.resumed_from else "started from scratch"
    epochs = (
        "; ".join(f"{s}: {len(e)} epoch(s)" for s, e in _epochs_by_stage(result.history).items()) or "no epoch finished"
    )
    return f"{head}\n{source}\nhistory: {epochs}\ncheckpoints: {result.checkpoint_dir}\noutputs: {result.output_dir}"


# ---------------------------------------------------------------- display


def show_image(path: str | Path, caption: str | None = None) -> None:
    """Show a PNG inline (IPython) with an optional caption; a missing file is reported, not raised.

    Returns None so that a cell ending with this call shows the image only (no repr of a return value).
    """
    from IPython.display import Image, display

    path = Path(path)
    if not path.is_file():
        print(f"{path.name}: not written yet ({path})")
        return
    if caption:
        print(caption)
    display(Image(filename=str(path)))


def sample_captions(output_dir: str | Path) -> list[tuple[Path, str]]:
    """Each `sample_<condition>.png` of hmolqd.training.outputs.SAMPLE_CONDITIONS with the door condition it
    asked for."""
    out = []
    for name, doors in SAMPLE_CONDITIONS:
        asked = (
            "unconditional (no door condition)"
            if doors is None
            else condition_caption(doors) + " (sides as seen on screen)"
        )
        asked += "; red outline = not playable"
        out.append((Path(output_dir) / f"sample_{name}.png", f"sample_{name}.png: {asked}"))
    return out


def show_samples(output_dir: str | Path) -> None:
    """Show every sample grid with its door condition; says so when training has not finished yet."""
    captions = sample_captions(output_dir)
    if not any(path.is_file() for path, _ in captions):
        print("no sample grids yet: they are written when the last stage finishes (run the notebook again to resume)")
        return
    for path, caption in captions:
        show_image(path, caption)


def draw_dungeon(cfg: Config, rooms: int | None = 20, seed: int = 0) -> str:
    """One whole dungeon from the trained model: a layout sampled like the real ones (`rooms` rooms, None =
    drawn like them), its rooms from `model_final.pt` on the run's device, checked for walkability and the
    key/lock mission (`hmolqd.dungeon`). Writes `dungeon_generated.txt/.dot/.png/.json` into output_dir,
    adds them to the outputs zip, shows the map and returns the summary."""
    from hmolqd.checkpointing.export import load_model
    from hmolqd.dungeon import format_summary, generate_dungeon

    out = Path(cfg.paths.output_dir)
    if not (out / FINAL_MODEL).is_file():
        return (
            f"no dungeon yet: {FINAL_MODEL} is written when the last stage finishes (run the notebook again to resume)"
        )
    model = load_model(out / FINAL_MODEL).to(resolve_device(cfg.run.device))
    dungeon = generate_dungeon(model, rooms=rooms, seed=seed, out=out, stem=GENERATED_DUNGEON)
    zip_outputs(out, cfg.paths.checkpoint_dir)
    show_image(out / f"{GENERATED_DUNGEON}.png")
    return format_summary(dungeon)


def illuminate_dungeons(cfg: Config, evaluations: int = 200, seed: int = 0) -> str:
    """A MAP-Elites archive of dungeons from the trained model (`hmolqd.illuminate`, needs pyribs: the
    extra hmolqd[qd]): `evaluations` dungeons, checkpointed in output_dir/illuminate (running the cell again
    resumes), its heatmap shown, the outputs zip written again with it; returns the archive's summary line.
    Without pyribs, says how to get it."""
    import importlib.util

    from hmolqd.checkpointing.export import load_model

    if importlib.util.find_spec("ribs") is None:
        return (
            "no archive: pyribs is not installed (pip install ribs, or pip install hmolqd[qd]); "
            "the rest of the notebook does not need it"
        )
    from hmolqd.illuminate import illuminate
    from hmolqd.illuminate.api import finished_run

    out = Path(cfg.paths.output_dir)
    if not (out / FINAL_MODEL).is_file():
        return (
            f"no archive yet: {FINAL_MODEL} is written when the last stage finishes (run the notebook again to resume)"
        )
    model = load_model(out / FINAL_MODEL).to(resolve_device(cfg.run.device))
    # a finished archive (the cell run again) is reported from its checkpoint alone: nothing evaluated or unpickled
    done = finished_run(model, evaluations=evaluations, out=out / ILLUMINATE_DIR, seed=seed)
    s = done["stats"] if done else illuminate(model, evaluations=evaluations, out=out / ILLUMINATE_DIR, seed=seed).stats
    zip_outputs(out, cfg.paths.checkpoint_dir)  # the zip holds the archive's summary, pictures and archive.pt
    show_image(out / ILLUMINATE_DIR / "heatmap.png")
    return (
        f"{s['elites']} elite dungeons in {s['cells']} cells (coverage {100 * s['coverage']:.1f} %, "
        f"QD score {s['qd_score']:.1f}, {100 * (s['beaten_elites'] or 0):.1f} % beaten); "
        f"heatmap, elite grid and every elite's files in {out / ILLUMINATE_DIR}"
    )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def list_output_files(output_dir: str | Path, checkpoint_dir: str | Path | None = None) -> str:
    """A table of the files in output_dir (and checkpoint_dir) with their sizes, and what the zip holds."""
    lines = []
    for folder in [Path(output_dir)] + ([Path(checkpoint_dir)] if checkpoint_dir is not None else []):
        files = (
            sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
        )
        lines.append(f"{folder.resolve()}/ ({len(files)} files, {_size(sum(p.stat().st_size for p in files))})")
        lines += [f"  {p.name:<40} {_size(p.stat().st_size):>10}" for p in files]
    zip_path = Path(output_dir) / ZIP_NAME
    if zip_path.is_file():
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
        lines.append(
            f"{ZIP_NAME} holds {len(names)} files: download it from the output panel (or {FINAL_MODEL} alone to sample)"
        )
    else:
        lines.append(f"{ZIP_NAME} is not written yet: it is made when the last stage finishes")
    return "\n".join(lines)

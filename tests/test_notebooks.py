"""The two notebooks, executed headless with nbclient on the real corpus (tiny configs), and their structure.

Executing them (parameters injected papermill-style, single-threaded kernels) is in tests/notebook_helpers.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import matplotlib.image
import nbformat
import pytest
from model_helpers import TINY_MODEL
from notebook_helpers import execute, inject, read, text_of

from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.resume import NO_CHECKPOINT
from hmolqd.config import Config
from hmolqd.sampling.generate import generate
from hmolqd.training.outputs import FINAL_MODEL, SAMPLE_CONDITIONS, ZIP_NAME

REPO = Path(__file__).resolve().parents[1]
TRAIN_NB = REPO / "train_h_molqd_kaggle.ipynb"
CHECK_NB = REPO / "test_checkpoint_resume.ipynb"
# The seed notebook's keys: the CONFIG cell must keep every one of them.
SEED_KEYS = {
    "batch_size",
    "num_epochs",
    "learning_rate",
    "weight_decay",
    "checkpoint_every",
    "latent_dim",
    "num_embeddings",
    "num_timesteps",
    "embedding_dim",
    "data_dir",
    "checkpoint_dir",
    "output_dir",
    "resume_from",
    "auto_resume",
    "use_amp",
    "log_every",
    "val_every",
}
# 5 optimizer steps per epoch on the 1212 training rooms (mirrors included); a couple of seconds per stage on CPU.
TINY = {
    **TINY_MODEL,
    "vqvae_epochs": 1,
    "joint_epochs": 0,
    "batch_size": 256,
    "warmup_steps": 2,
    "sample_steps": 2,
    "eval_samples": 8,
    "door_augment": 0,
}


def images_shown(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def epochs(history: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["stage"], r["epoch"]) for r in history]


def assert_outputs_valid(out: Path, ckpt: Path) -> list[dict[str, Any]]:
    """Every output file exists and is what it claims to be; returns the training history."""
    Config.from_json((out / "config.json").read_text())
    history = json.loads((out / "training_history.json").read_text())
    pngs = ["training_curves.png", "dungeon_tloz1_1.png", "dungeon_generated.png"] + [
        f"sample_{name}.png" for name, _ in SAMPLE_CONDITIONS
    ]
    for name in pngs:
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 16, f"{name}: {image.shape}"
    with zipfile.ZipFile(out / ZIP_NAME) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
    expected = {f"outputs/{p.name}" for p in out.iterdir() if p.is_file() and p.name != ZIP_NAME}
    assert expected | {"checkpoints/checkpoint_latest.pt"} <= names, sorted(expected - names)
    rooms = generate(load_model(out / FINAL_MODEL), 2, doors="top,bottom", steps=2, seed=0)
    assert tuple(rooms.shape) == (2, 16, 11)
    assert (ckpt / "checkpoint_latest.pt").is_file()
    return history


# ---------------------------------------------------------------- structure (cheap)


@pytest.mark.parametrize("path", [TRAIN_NB, CHECK_NB], ids=lambda p: p.name)
def test_notebook_is_valid_clean_and_parametrised(path: Path) -> None:
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit the notebook without outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for cell in code:
        ast.parse(cell.source)  # every cell is valid Python
        for line in cell.source.splitlines():
            if "pip" in line and "install" in line:
                assert "--no-deps" in line, f"a pip install without --no-deps could replace Kaggle's CUDA torch: {line}"


STUDY_KEYS = (
    "recombine_augment",
    "num_epochs",
    "guidance_scale",
    "sample_temperature",
    "pattern_guard",
    "request_guard",
    "guard_draws",
)


def test_training_notebook_config_cell_documents_every_key() -> None:
    cell = next(
        c.source for c in read(TRAIN_NB).cells if c.source.lstrip().startswith("# 2.") and "CONFIG = {" in c.source
    )
    namespace: dict[str, Any] = {}
    exec(cell, namespace)  # noqa: S102 - our own notebook's literal dict
    config = namespace["CONFIG"]
    assert SEED_KEYS <= set(config), f"seed keys missing from CONFIG: {sorted(SEED_KEYS - set(config))}"
    for key in config:
        line = next(line for line in cell.splitlines() if line.strip().startswith(f'"{key}":'))
        assert re.search(r"#\s*\S", line), f"CONFIG key {key!r} has no comment"
    # The notebook trains and samples the best measured point (bench/QUALITY.md): the cpu preset's values of the keys
    # the fidelity-novelty study set, Config()'s defaults for every other key. Config() itself keeps the plain model
    # (no recombined rooms, no guards: the pattern guard reads the corpus when sampling).
    assert set(STUDY_KEYS) <= set(config), f"CONFIG lacks {sorted(set(STUDY_KEYS) - set(config))}"
    best = Config.preset("cpu").to_flat()
    expected = {**Config().to_flat(), **{k: best[k] for k in STUDY_KEYS}}
    assert config == {k: expected[k] for k in config}, "CONFIG shows other values than the cpu preset's / Config's"
    Config.from_flat(config)


# ---------------------------------------------------------------- executed (slow, real corpus)


@pytest.mark.slow
@pytest.mark.real_data
def test_training_notebook_runs_then_resumes_when_run_again(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    base = {**TINY, "data_dir": str(vglc_dir), "checkpoint_dir": str(ckpt), "output_dir": str(out)}
    nb = read(TRAIN_NB)

    first = execute(
        inject(nb, CONFIG_OVERRIDES={**base, "num_epochs": 1}, ILLUMINATE_EVALUATIONS=2), tmp_path, monkeypatch
    )
    text = text_of(first)
    assert NO_CHECKPOINT in text and "device: cpu" in text and "AMP: off" in text
    assert "rooms: 459" in text  # the corpus statistics cell
    # the MAP-Elites cell shows its heatmap where pyribs is installed
    heatmap = int(importlib.util.find_spec("ribs") is not None)
    assert images_shown(first) == 3 + len(SAMPLE_CONDITIONS) + heatmap, (
        "real dungeon map, curves, one grid per door condition, generated dungeon"
    )
    assert ("elite dungeons in" if heatmap else "pyribs is not installed") in text
    # the generated dungeon's summary
    assert "dungeon sampled_0 (sampled (seed 0, template " in text and "locks on the room graph: " in text
    history = assert_outputs_valid(out, ckpt)
    assert epochs(history) == [("vqvae", 1), ("diffusion", 1)]

    # Run again with one more diffusion epoch: it must resume, not retrain what is done.
    second = execute(
        inject(nb, CONFIG_OVERRIDES={**base, "num_epochs": 2}, ILLUMINATE_EVALUATIONS=2), tmp_path, monkeypatch
    )
    text = text_of(second)
    resumed = re.findall(r"Resuming from (\S+) \(stage diffusion, epoch 1, global step \d+", text)
    assert resumed and all(Path(p) == ckpt / "checkpoint_latest.pt" for p in resumed), text[:2000]
    assert "already trained: vqvae: epochs 1; diffusion: epochs 1" in text
    assert f"resumed from {ckpt / 'checkpoint_latest.pt'}" in text  # the training summary
    again = assert_outputs_valid(out, ckpt)
    assert epochs(again) == [("vqvae", 1), ("diffusion", 1), ("diffusion", 2)]
    assert again[:2] == history, "the epochs done before the re-run are kept as they were, not retrained"


@pytest.mark.slow
@pytest.mark.real_data
def test_checkpoint_resume_notebook_passes_every_check(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = execute(inject(read(CHECK_NB), DATA_DIR=str(vglc_dir), WORKDIR=str(tmp_path / "work")), tmp_path, monkeypatch)
    text = text_of(nb)
    assert len(re.findall(r"^✔ PASS", text, flags=re.M)) == 7 and "FAIL" not in text, text
    assert "all 7 checks passed" in text
    assert "interrupted training = uninterrupted" in text and "bit-exact" in text

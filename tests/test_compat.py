"""Files written by hmolqd 0.1.0 (before the subpackage layout) still load: a committed tiny fixture.

tests/fixtures/v0_1_0/ holds what the 0.1.0 code wrote for a tiny run (1 VQ-VAE epoch, 1 diffusion epoch):
its config.json, the training checkpoint_latest.pt (LambdaLR scheduler state, no run identity) and the
inference-only model_final.pt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.fileformat import load_checkpoint
from hmolqd.config import Config
from hmolqd.sampling.generate import generate
from hmolqd.training.loop import train

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"


def test_v0_1_0_model_final_loads_and_generates() -> None:
    model = load_model(FIXTURE / "model_final.pt")
    assert model.config == Config.load(FIXTURE / "config.json")
    rooms = generate(model, 3, doors="top,left", steps=2, seed=0)
    assert rooms.shape == (3, 16, 11) and rooms.dtype == torch.uint8
    assert torch.equal(rooms, generate(model, 3, doors="top,left", steps=2, seed=0))


def test_v0_1_0_training_checkpoint_resumes(vglc_dir: Path, tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "checkpoint_latest.pt", tmp_path / "checkpoint_latest.pt")
    old = load_checkpoint(tmp_path / "checkpoint_latest.pt")
    assert (old["stage"], old["epoch"], "last_epoch" in old["scheduler"]) == ("diffusion", 1, True)
    cfg = Config.load(FIXTURE / "config.json").with_overrides(
        data_dir=str(vglc_dir), checkpoint_dir=str(tmp_path), output_dir=str(tmp_path / "out"), num_epochs=2
    )
    messages: list[str] = []
    result = train(cfg, log=messages.append)
    assert result.finished and result.resumed_from == tmp_path / "checkpoint_latest.pt"
    assert [(r["stage"], r["epoch"]) for r in result.history] == [("vqvae", 1), ("diffusion", 1), ("diffusion", 2)]
    assert load_checkpoint(tmp_path / "checkpoint_latest.pt")["global_step"] > old["global_step"]

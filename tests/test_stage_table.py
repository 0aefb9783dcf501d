"""Adding a stage touches one table: every per-stage fact (epochs key, file names, objective, trained parts,
data form, order) is read off `hmolqd.config.STAGE_TABLE`, so a stage registered there alone trains and saves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hmolqd import config
from hmolqd.checkpointing.fileformat import CheckpointError, checkpoint_name, list_checkpoint_files, load_checkpoint
from hmolqd.config import Config, ConfigError, Stage
from hmolqd.models.room_model import RoomModel
from hmolqd.training import stages as training_stages
from hmolqd.training.loop import train
from hmolqd.training.trainee import TINY_MODEL

# A fine-tuning stage of the denoiser alone, in place of the joint stage (it reuses joint_epochs as its
# epochs key: a stage with an epoch count of its own would add that TrainConfig field, its config key).
POLISH = Stage("polish", epochs_key="joint_epochs", file_prefix="polish_", trains=("diffusion",))


@pytest.fixture
def polish_table(monkeypatch: pytest.MonkeyPatch) -> tuple[Stage, ...]:
    table = (*config.STAGE_TABLE[:2], POLISH)
    monkeypatch.setattr(config, "STAGE_TABLE", table)
    return table


def test_the_default_table_is_the_three_stages() -> None:
    assert config.stage_names() == ("vqvae", "diffusion", "joint")
    assert [s.epochs_key for s in config.stages()] == ["vqvae_epochs", "num_epochs", "joint_epochs"]
    assert [checkpoint_name(s.name, "epoch", 1) for s in config.stages()] == [
        "checkpoint_vqvae_epoch_1.pt",
        "checkpoint_epoch_1.pt",
        "checkpoint_joint_epoch_1.pt",
    ]
    assert config.denoiser_stage().name == "diffusion"


def test_every_per_stage_fact_comes_from_the_table(polish_table: tuple[Stage, ...], tmp_path: Path) -> None:
    assert config.stage_names() == ("vqvae", "diffusion", "polish") and config.stage_named("polish") is POLISH
    # file names: written and parsed back with the stage's prefix; the stage it replaced is unknown now
    assert checkpoint_name("polish", "epoch", 3) == "checkpoint_polish_epoch_3.pt"
    assert checkpoint_name("polish", "best") == "checkpoint_polish_best.pt"
    with pytest.raises(CheckpointError, match="unknown stage 'joint'"):
        checkpoint_name("joint", "epoch", 1)
    for name in ("checkpoint_polish_epoch_3.pt", "checkpoint_polish_best.pt", "checkpoint_joint_epoch_1.pt"):
        (tmp_path / name).write_bytes(b"")
    assert {(f.path.name, f.stage, f.kind) for f in list_checkpoint_files(tmp_path)} == {
        ("checkpoint_polish_epoch_3.pt", "polish", "epoch"),
        ("checkpoint_polish_best.pt", "polish", "best"),
    }
    # config: its epochs key is checked, and the joint stage's rule (discrete: 0 epochs) no longer applies to it
    cfg = Config.from_flat({**TINY_MODEL, "model_kind": "discrete", "joint_epochs": 2})
    with pytest.raises(ConfigError, match="'joint_epochs' = -1: must be >= 0"):
        Config.from_flat({**TINY_MODEL, "joint_epochs": -1})
    assert training_stages.stage_epochs(cfg, POLISH) == 2
    # training: objective, trained parameters, train mode and data form follow from `trains`
    gen = RoomModel.from_config(cfg)
    assert isinstance(training_stages.objective(gen, POLISH, cfg), training_stages.DiffusionObjective)
    assert [id(p) for p in training_stages.trainable(gen, POLISH)] == [id(p) for p in gen.diffusion.parameters()]
    training_stages.set_train_mode(gen, POLISH)
    assert gen.diffusion.training and not gen.vqvae.training
    assert all(p.requires_grad for p in gen.diffusion.parameters())
    assert not any(p.requires_grad for p in gen.vqvae.parameters())
    rooms = torch.zeros(3, 16, 11, dtype=torch.long)
    data = training_stages.stage_data(gen, POLISH, rooms, torch.zeros(3, 4), torch.zeros(3))
    assert data.x.shape == (3, *training_stages.encode_codes(gen, rooms).shape[1:])  # codes, not rooms


def test_the_unpatched_table_keeps_the_joint_rule() -> None:
    with pytest.raises(ConfigError, match="'joint_epochs' = 2: must be 0 with model_kind 'discrete'"):
        Config.from_flat({**TINY_MODEL, "model_kind": "discrete", "joint_epochs": 2})


@pytest.mark.real_data
def test_a_registered_stage_trains_saves_and_resumes(
    polish_table: tuple[Stage, ...], vglc_dir: Path, tmp_path: Path
) -> None:
    flat = {
        **TINY_MODEL,
        "vqvae_epochs": 1,
        "num_epochs": 1,
        "joint_epochs": 1,
        "door_augment": 0,
        "batch_size": 256,
        "warmup_steps": 2,
        "log_every": 2,
        "sample_every": 0,
        "sample_steps": 2,
        "checkpoint_every": 1,
        "data_dir": str(vglc_dir),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "output_dir": str(tmp_path / "out"),
    }
    cfg = Config.from_flat(flat)  # discrete: the joint stage could not run here, the polish stage can
    messages: list[str] = []
    result = train(cfg, log=messages.append)
    assert result.finished and [r["stage"] for r in result.history] == ["vqvae", "diffusion", "polish"]
    assert any(m.startswith("[polish] epoch 1 ") for m in messages)
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "checkpoint_polish_epoch_1.pt").is_file() and not list(ckpt.glob("checkpoint_joint_*"))
    latest = load_checkpoint(ckpt / "checkpoint_latest.pt")
    after_diffusion = load_checkpoint(ckpt / "checkpoint_epoch_1.pt")
    assert latest["stage"] == "polish" and latest["progress"]["epochs_done"] == 1
    vq_end, vq_before = latest["models"]["vqvae"], after_diffusion["models"]["vqvae"]
    assert all(torch.equal(vq_end[k], vq_before[k]) for k in vq_end)  # polish trains the denoiser alone
    den_end, den_before = latest["models"]["diffusion"], after_diffusion["models"]["diffusion"]
    assert any(not torch.equal(den_end[k], den_before[k]) for k in den_end if den_end[k].is_floating_point())
    again = train(cfg, log=messages.append)
    assert again.already_finished and len(again.history) == 3  # resumed from the polish stage's last checkpoint

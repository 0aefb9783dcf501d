"""model_final.pt with one denoiser (`export_model`) against the full form of every part, on the tiny CPU model.

The full form is what `export_model` wrote before (`export_inference` of `RoomModel.parts()`): such files must
load as before, and the one-denoiser file of the same model must generate the same rooms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from model_helpers import TINY_MODEL, randomize_zero_init

import hmolqd
from hmolqd.checkpointing.compare import assert_same
from hmolqd.checkpointing.export import ONE_DENOISER_PARTS, export_inference, export_model, load_inference
from hmolqd.checkpointing.fileformat import INFERENCE_FORMAT, CheckpointError, finalize, serialize, write_atomic
from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.config import Config
from hmolqd.models.room_model import RoomModel
from hmolqd.training.trainee import make_trainee, train_steps, training_state

ROOMS = 16


def tiny_model(**keys: Any) -> RoomModel:
    """The tiny model with its two denoisers apart and its diffusion module's own state (mirror table, latent scale)
    off its initial value, so that a file holding the wrong denoiser, or missing that state, generates other rooms."""
    model = RoomModel.from_config(Config.from_flat({**TINY_MODEL, **keys}))
    randomize_zero_init(model.diffusion.denoiser)  # adaLN-Zero: a fresh denoiser ignores its input
    model.reset_ema()
    with torch.no_grad():
        for p in model.diffusion.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        if model.cfg.model_kind == "discrete":  # an involution, as the mirror of a code is
            model.diffusion.mirror_rows.copy_(model.diffusion.mirror_rows.flip(0))
        else:
            model.diffusion.latent_scale.fill_(0.5)
    return model.eval()


def full_form(model: RoomModel, path: Path) -> Path:
    """The file `export_model` wrote before one-denoiser exports: every part, both denoisers."""
    return export_inference(path, model.parts(), model.config, {"vqvae": 1, "diffusion": 1, "joint": 0})


def rooms(model: RoomModel, **sampling: Any) -> torch.Tensor:
    return hmolqd.generate(model, ROOMS, doors="north,west", seed=0, steps=3, **sampling)


def test_the_export_holds_one_denoiser_and_is_smaller(tmp_path: Path) -> None:
    model = tiny_model()
    old = full_form(model, tmp_path / "full.pt")
    new = export_model(model, tmp_path / "model_final.pt")
    assert new.stat().st_size < old.stat().st_size
    raw = torch.load(new, weights_only=True)
    assert raw["format"] == INFERENCE_FORMAT and raw["denoiser"] == "ema"
    assert sorted(raw["models"]) == sorted(ONE_DENOISER_PARTS)
    assert not any(key.startswith("denoiser.") for key in raw["models"]["diffusion_rest"])
    assert_same(raw["models"]["denoiser"], model.ema.state_dict(), "exported denoiser")
    assert load_inference(new)["denoiser"] == "ema" and load_inference(old)["denoiser"] is None


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_the_export_generates_the_rooms_of_the_full_form(tmp_path: Path, kind: str) -> None:
    model = tiny_model(model_kind=kind)
    full = hmolqd.load_model(full_form(model, tmp_path / "full.pt"))
    one = hmolqd.load_model(export_model(model, tmp_path / "model_final.pt"))
    assert not torch.equal(rooms(full), rooms(full, use_ema=False))  # the two denoisers differ: the test can tell
    assert torch.equal(rooms(one), rooms(full))
    # Both denoiser slots hold the exported weights, so any caller samples them.
    assert_same(one.diffusion.denoiser.state_dict(), model.ema.state_dict(), "diffusion.denoiser")
    assert_same(one.ema.state_dict(), model.ema.state_dict(), "ema")
    assert torch.equal(rooms(one, use_ema=False), rooms(full))
    rest = {k: v for k, v in model.diffusion.state_dict().items() if not k.startswith("denoiser.")}
    assert_same({k: one.diffusion.state_dict()[k] for k in rest}, rest, "the diffusion module's own state")


def test_use_ema_false_exports_the_trained_denoiser(tmp_path: Path) -> None:
    model = tiny_model(use_ema=False)
    path = export_model(model, tmp_path / "model_final.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["denoiser"] == "raw"
    assert_same(raw["models"]["denoiser"], model.diffusion.denoiser.state_dict(), "exported denoiser")
    full = hmolqd.load_model(full_form(model, tmp_path / "full.pt"))
    assert torch.equal(rooms(hmolqd.load_model(path)), rooms(full))


def test_a_full_form_file_and_a_training_checkpoint_load_as_before(tmp_path: Path) -> None:
    model = tiny_model()
    loaded = hmolqd.load_model(full_form(model, tmp_path / "full.pt"))
    assert_same(loaded.state_dict(), model.state_dict(), "full-form model")  # both denoisers, each its own
    t = make_trainee(0, torch.device("cpu"))
    train_steps(t, 2)
    CheckpointManager(tmp_path / "ckpt").save_epoch_end(training_state(t, "diffusion", 1))
    from_checkpoint = hmolqd.load_model(tmp_path / "ckpt" / "checkpoint_latest.pt")
    assert_same(from_checkpoint.state_dict(), t.gen.state_dict(), "checkpoint model")


def rewritten(source: Path, path: Path, change: Any) -> Path:
    """`source`'s payload changed by `change(payload)` and written as a valid file (digest recomputed)."""
    payload = torch.load(source, weights_only=True)
    change(payload)
    write_atomic(path, serialize(finalize(payload, INFERENCE_FORMAT)))
    return path


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p.update(denoiser="swa"), "its 'denoiser' key is 'swa', a form this hmolqd does not know"),
        (lambda p: p.update(denoiser=None), "its 'denoiser' key is None, a form this hmolqd does not know"),
        (lambda p: p["models"].pop("denoiser"), "says it holds the 'ema' denoiser but has no ['denoiser'] weights"),
        (lambda p: p.pop("denoiser"), "holds one denoiser but does not say which (no 'denoiser' key"),
    ],
    ids=["unknown form", "no form", "no denoiser weights", "no denoiser key"],
)
def test_a_file_that_does_not_say_its_denoiser_or_lacks_it_is_refused(tmp_path: Path, change: Any, says: str) -> None:
    path = rewritten(export_model(tiny_model(), tmp_path / "model_final.pt"), tmp_path / "bad.pt", change)
    with pytest.raises(CheckpointError) as err:
        hmolqd.load_model(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message, message

"""The inference-only file (`model_final.pt`): weights and config, no optimizer or RNG state.

`export_inference` / `load_inference` handle any {name: module or state_dict}; `export_model` / `load_model`
do it for the room model, whose parts are `RoomModel.parts()` (the one list of what a file holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hmolqd.checkpointing.fileformat import (
    CHECKPOINT_FORMAT,
    INFERENCE_FORMAT,
    CheckpointError,
    finalize,
    load_checkpoint,
    serialize,
    write_atomic,
)
from hmolqd.checkpointing.restore import state_of
from hmolqd.config import Config, ConfigError, denoiser_stage, stage_names
from hmolqd.models.room_model import RoomModel


def export_inference(
    path: str | Path,
    model_states: Mapping[str, Any],
    config: Config | Mapping[str, Any],
    trained_epochs: Mapping[str, int] | None = None,
) -> Path:
    """Weights-only file for sampling: {name: state_dict} (modules are unwrapped), config, format version and,
    from a training, `trained_epochs` ({stage: epochs trained}), so that a model never trained is recognised."""
    path = Path(path)
    models = {name: state_of(m) for name, m in model_states.items()}
    cfg = config.to_dict() if isinstance(config, Config) else dict(config)
    payload: dict[str, Any] = {"models": models, "config": cfg}
    if trained_epochs is not None:
        payload["trained_epochs"] = {str(k): int(v) for k, v in trained_epochs.items()}
    write_atomic(path, serialize(finalize(payload, INFERENCE_FORMAT)))
    return path


def load_inference(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load an export (or a training checkpoint: its models, config and stage); raises CheckpointError.

    "stage" is the training stage a checkpoint was saved in, None for an export (written after the last stage).
    """
    obj = load_checkpoint(path, map_location, (INFERENCE_FORMAT, CHECKPOINT_FORMAT))
    return {
        "models": obj["models"],
        "config": obj["config"],
        "format": obj["format"],
        "format_version": obj["format_version"],
        "stage": obj.get("stage"),
        "trained_epochs": obj.get("trained_epochs"),
    }


def export_model(model: RoomModel, path: str | Path, trained_epochs: Mapping[str, int] | None = None) -> Path:
    """Write `model` (every part, unwrapped) and its run's config as an inference-only file."""
    return export_inference(path, model.parts(), model.config, trained_epochs)


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", *, allow_untrained: bool = False
) -> RoomModel:
    """Rebuild the room model from `model_final.pt` (or any training checkpoint) with `weights_only=True`.

    The returned model's `.config` is the run's whole Config (split, sampling settings), in eval mode.
    A checkpoint of the first stage (VQ-VAE) holds a denoiser that was never trained, so sampling it gives
    noise: it is refused with that reason unless `allow_untrained` (e.g. to look at its VQ-VAE).
    """
    obj = load_inference(path, map_location)
    first, denoiser = stage_names()[0], denoiser_stage()
    if obj["stage"] == first and not allow_untrained:
        raise CheckpointError(
            f"{path}: the checkpoint's stage is {first!r}, so its denoiser was never trained and the rooms it "
            f"generates would be noise; use model_final.pt or a checkpoint of the {denoiser.name!r} stage "
            "(checkpoint_latest.pt / checkpoint_best.pt once that stage has started)"
        )
    trained = obj["trained_epochs"]
    if isinstance(trained, Mapping) and not trained.get(denoiser.name) and not allow_untrained:
        raise CheckpointError(
            f"{path}: its denoiser was never trained (the {denoiser.name!r} stage ran 0 epochs: "
            f"{denoiser.epochs_key}=0), so the rooms it generates would be noise; train with "
            f"{denoiser.epochs_key} >= 1 (epochs trained: {dict(trained)})"
        )
    try:
        cfg = Config.from_saved(obj["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its saved config cannot be used by this version: {err}") from err
    model = RoomModel.from_config(cfg)
    for name, part in model.parts().items():
        if name not in obj["models"]:
            raise CheckpointError(f"{path}: holds no {name!r} weights (it has {sorted(obj['models'])})")
        try:
            part.load_state_dict(obj["models"][name])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{path}: the {name!r} weights do not match the saved config's architecture: {err}"
            ) from err
    return model.eval()


# The ModelConfig keys that fix the VQ-VAE's weights and codes: a tokenizer is reusable where these agree.
TOKENIZER_KEYS: tuple[str, ...] = (
    "model_kind",
    "num_embeddings",
    "latent_dim",
    "embedding_dim",
    "downsample",
    "vq_local",
    "column_pad",
)


def load_tokenizer(model: RoomModel, path: str | Path) -> None:
    """Copy the VQ-VAE weights of the model file at `path` (config key vqvae_from) into `model`; CheckpointError
    naming every tokenizer key that differs (`TOKENIZER_KEYS`), since those codes would mean something else."""
    source = load_model(path, allow_untrained=True)
    diff = [
        f"{k}: {getattr(source.cfg, k)!r} there, {getattr(model.cfg, k)!r} here"
        for k in TOKENIZER_KEYS
        if getattr(source.cfg, k) != getattr(model.cfg, k)
    ]
    if diff:
        raise CheckpointError(f"vqvae_from {path}: its tokenizer differs from this config's ({'; '.join(diff)})")
    model.vqvae.load_state_dict(source.vqvae.state_dict())

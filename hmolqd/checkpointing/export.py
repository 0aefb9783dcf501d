"""The inference-only file (`model_final.pt`): weights and config, no optimizer or RNG state.

`export_inference` / `load_inference` handle any {name: module or state_dict}; `export_model` / `load_model`
do it for the room model. A training checkpoint holds every part of `RoomModel.parts()`, both denoisers
included (the trained one inside `diffusion`, its EMA copy as `ema`). An export holds only what sampling uses
(`ONE_DENOISER_PARTS`): the VQ-VAE, the diffusion module's own state without its denoiser, and one denoiser,
the EMA copy where the run samples with it (`use_ema`) or the trained weights otherwise; the file's `denoiser`
key says which ("ema" or "raw"). `load_model` reads both forms, and exports written before this one (every part,
no `denoiser` key) load as before.
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

# An export's `denoiser` key: which of the model's two denoisers its "denoiser" weights are.
DENOISER_FORMS = ("ema", "raw")
# The models of an export with one denoiser; "diffusion_rest" is the diffusion module's state without "denoiser.*"
# (code mirror tables, or the noise schedule and latent scale): small, but set from the data in training.
ONE_DENOISER_PARTS = ("vqvae", "diffusion_rest", "denoiser")
_DENOISER_PREFIX = "denoiser."  # where CodeDiffusion / LatentDiffusion keep their denoiser


def export_inference(
    path: str | Path,
    model_states: Mapping[str, Any],
    config: Config | Mapping[str, Any],
    trained_epochs: Mapping[str, int] | None = None,
    *,
    denoiser: str | None = None,
) -> Path:
    """Weights-only file for sampling: {name: state_dict} (modules are unwrapped), config, format version and,
    from a training, `trained_epochs` ({stage: epochs trained}), so that a model never trained is recognised;
    `denoiser` (one of DENOISER_FORMS) marks a room model's export of one denoiser (`export_model`)."""
    path = Path(path)
    models = {name: state_of(m) for name, m in model_states.items()}
    cfg = config.to_dict() if isinstance(config, Config) else dict(config)
    payload: dict[str, Any] = {"models": models, "config": cfg}
    if trained_epochs is not None:
        payload["trained_epochs"] = {str(k): int(v) for k, v in trained_epochs.items()}
    if denoiser is not None:
        if denoiser not in DENOISER_FORMS:
            raise ValueError(f"export_inference: denoiser must be one of {DENOISER_FORMS}, got {denoiser!r}")
        payload["denoiser"] = denoiser
    write_atomic(path, serialize(finalize(payload, INFERENCE_FORMAT)))
    return path


def load_inference(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load an export (or a training checkpoint: its models, config and stage); raises CheckpointError.

    "stage" is the training stage a checkpoint was saved in, None for an export (written after the last stage).
    "denoiser" is "ema" or "raw" for an export of one denoiser (its models are `ONE_DENOISER_PARTS`), None for a
    file holding every part (a checkpoint, an export written before one-denoiser exports).
    """
    obj = load_checkpoint(path, map_location, (INFERENCE_FORMAT, CHECKPOINT_FORMAT))
    return {
        "models": obj["models"],
        "config": obj["config"],
        "format": obj["format"],
        "format_version": obj["format_version"],
        "stage": obj.get("stage"),
        "trained_epochs": obj.get("trained_epochs"),
        "denoiser": _denoiser_form(path, obj),
    }


def _denoiser_form(path: str | Path, obj: Mapping[str, Any]) -> str | None:
    """The file's `denoiser` key (None where it has none), checked against what the file holds, so that no reader
    has to guess which weights an export's one denoiser is."""
    if "denoiser" not in obj:
        return None
    form, models = obj["denoiser"], obj["models"]
    if type(form) is not str or form not in DENOISER_FORMS:
        raise CheckpointError(
            f"{path}: its 'denoiser' key is {form!r}, a form this hmolqd does not know "
            f"(it reads {' or '.join(map(repr, DENOISER_FORMS))}, or a file of every part without that key)"
        )
    held = sorted(map(str, models)) if isinstance(models, Mapping) else []
    missing = [name for name in ONE_DENOISER_PARTS if name not in held]
    if missing:
        raise CheckpointError(
            f"{path}: says it holds the {form!r} denoiser but has no {missing} weights (it has {held})"
        )
    return form


def export_model(model: RoomModel, path: str | Path, trained_epochs: Mapping[str, int] | None = None) -> Path:
    """Write what sampling needs (`ONE_DENOISER_PARTS`, unwrapped) and the run's config as an inference-only file.

    The one denoiser is the one the run's `use_ema` samples with: the EMA copy, or the trained weights when
    `use_ema` is false; the other is left out (the file would hold the denoiser twice), and `denoiser` says which.
    """
    use_ema = model.config.run.sampling.use_ema
    diffusion = state_of(model.diffusion)
    rest = {key: value for key, value in diffusion.items() if not key.startswith(_DENOISER_PREFIX)}
    parts = {"vqvae": model.vqvae, "diffusion_rest": rest, "denoiser": model.sampling_denoiser(use_ema)}
    return export_inference(path, parts, model.config, trained_epochs, denoiser="ema" if use_ema else "raw")


def _part_states(path: str | Path, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The state of every `RoomModel.parts()` entry a file gives. An export of one denoiser gives it to both
    denoisers (`ema` and `diffusion.denoiser`), so the model samples the exported weights whatever `use_ema` a
    caller passes; a file of every part gives its own."""
    models = obj["models"]
    if obj["denoiser"] is None:
        if "denoiser" in models and "ema" not in models:
            raise CheckpointError(
                f"{path}: holds one denoiser but does not say which (no 'denoiser' key naming "
                f"{' or '.join(map(repr, DENOISER_FORMS))}); it has {sorted(models)}"
            )
        return dict(models)
    one = models["denoiser"]
    diffusion = {**models["diffusion_rest"], **{_DENOISER_PREFIX + key: value for key, value in one.items()}}
    return {"vqvae": models["vqvae"], "diffusion": diffusion, "ema": one}


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", *, allow_untrained: bool = False
) -> RoomModel:
    """Rebuild the room model from `model_final.pt` (or any training checkpoint) with `weights_only=True`.

    The returned model's `.config` is the run's whole Config (split, sampling settings), in eval mode. From an
    export of one denoiser both `ema` and `diffusion.denoiser` hold the exported weights (`_part_states`).
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
    states = _part_states(path, obj)
    for name, part in model.parts().items():
        if name not in states:
            raise CheckpointError(f"{path}: holds no {name!r} weights (it has {sorted(obj['models'])})")
        try:
            part.load_state_dict(states[name])
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

"""The whole room model: VQ-VAE tokenizer + a diffusion model over its latents + an EMA copy of the denoiser.

`ModelConfig.model_kind` picks the diffusion model: "discrete" (CodeDiffusion, absorbing-state diffusion over
the code indices) or "continuous" (LatentDiffusion, Gaussian diffusion over the pre-quantization latents).

`RoomModel.from_config(cfg)` builds it from a run's Config (the architecture is `cfg.model` alone, so a
checkpoint's `model` config section plus its state_dict restore it) and keeps that Config as `.config`, so
the sampling settings travel with the model. `parts()` names the modules a checkpoint saves (an export keeps
only the denoiser that samples). The EMA denoiser (Polyak averaging, as in DDPM's released models) is the one
used for sampling; it is an ordinary submodule, so it is saved in the same state_dict.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hmolqd.config import Config, ModelConfig
from hmolqd.data.attributes import ATTRIBUTES
from hmolqd.models.code_diffusion import CodeDiffusion
from hmolqd.models.latent_diffusion import LatentDiffusion
from hmolqd.models.vqvae import VQVAE


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """In place: ema <- decay * ema + (1 - decay) * model for float parameters and buffers; other buffers copied.

    Both modules must have the same parameter and buffer names and shapes (an EMA copy of `model`).
    """
    if not 0 <= decay <= 1:
        raise ValueError(f"ema_update: decay must be in [0, 1] (config key ema_decay), got {decay}")
    for kind, ema_items, items in (
        ("parameter", dict(ema_model.named_parameters()), dict(model.named_parameters())),
        ("buffer", dict(ema_model.named_buffers()), dict(model.named_buffers())),
    ):
        if ema_items.keys() != items.keys():
            diff = sorted(ema_items.keys() ^ items.keys())
            raise ValueError(f"ema_update: EMA and model {kind} names differ: {diff[:5]}")
        for name, ema_value in ema_items.items():
            value = items[name].detach()
            if ema_value.shape != value.shape:
                raise ValueError(
                    f"ema_update: {kind} {name!r} has shape {tuple(ema_value.shape)} in the EMA, "
                    f"{tuple(value.shape)} in the model"
                )
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - decay)
            else:
                ema_value.copy_(value)


class RoomModel(nn.Module):
    """Holds `vqvae` (VQVAE), `diffusion` (CodeDiffusion or LatentDiffusion on the VQ-VAE's grid) and `ema`
    (denoiser copy).

    `config` is the whole run Config the model belongs to (its `model` section equals `cfg`); a model built
    from a ModelConfig alone gets the defaults of every other section.
    """

    def __init__(self, cfg: ModelConfig, codebook_decay: float = 0.99, config: Config | None = None) -> None:
        super().__init__()
        config = config if config is not None else Config(model=cfg)
        if config.model != cfg:
            raise ValueError("RoomModel: config.model must equal the ModelConfig the model is built from")
        self.cfg = cfg
        self.config = config
        self.vqvae = VQVAE(cfg, codebook_decay=codebook_decay)
        self.diffusion: CodeDiffusion | LatentDiffusion
        if cfg.model_kind == "discrete":
            self.diffusion = CodeDiffusion(cfg, self.vqvae.latent_shape[1:])
        else:
            self.diffusion = LatentDiffusion(cfg, self.vqvae.latent_shape)
        self.ema = copy.deepcopy(self.diffusion.denoiser)
        self.ema.requires_grad_(False)
        self.ema.eval()

    @classmethod
    def from_config(cls, config: Config) -> RoomModel:
        return cls(config.model, codebook_decay=config.train.codebook_decay, config=config)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """The room attributes `generate(..., attributes=...)` can ask this model for (none without cond_attributes)."""
        return ATTRIBUTES if self.cfg.cond_attributes else ()

    def parts(self) -> dict[str, nn.Module]:
        """The modules a training checkpoint holds, by name (the one definition of that list); an export holds
        one of the two denoisers (`hmolqd.checkpointing.export.export_model`)."""
        return {"vqvae": self.vqvae, "diffusion": self.diffusion, "ema": self.ema}

    def train(self, mode: bool = True) -> RoomModel:
        super().train(mode)
        self.ema.eval()  # the EMA copy only ever samples
        return self

    def update_ema(self, decay: float) -> None:
        """Move the EMA denoiser towards the trained one (call after each optimizer step)."""
        ema_update(self.ema, self.diffusion.denoiser, decay)

    def reset_ema(self) -> None:
        """Copy the current denoiser into the EMA (e.g. at the start of diffusion training)."""
        ema_update(self.ema, self.diffusion.denoiser, 0.0)

    def sampling_denoiser(self, use_ema: bool = True) -> nn.Module:
        return self.ema if use_ema else self.diffusion.denoiser

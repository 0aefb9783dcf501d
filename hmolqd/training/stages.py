"""What each training stage means for the model: its loss module, trained parts and on-device data.

The stages themselves (names, epoch keys, file prefixes, trained parts) are rows of
`hmolqd.config.STAGE_TABLE`, in the bottom layer, because checkpointing needs them too; everything here is
read off a `Stage` row, with no stage names: the objective is that of the parts it trains
(`objective`), the trained parts get gradients and train mode (`set_train_mode`), and a stage that keeps
the VQ-VAE frozen iterates over latents encoded once (`stage_data`).

Each objective is an `nn.Module` whose `forward` returns `(loss, metrics)`, so that DDP's gradient hooks
(which fire through `forward`) work when the objective is wrapped. Metrics are detached scalar tensors;
they are synced to the host only at `log_every`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hmolqd.config import Config, Stage
from hmolqd.data.attributes import condition_tokens
from hmolqd.models.modes import eval_mode
from hmolqd.models.room_model import RoomModel


@dataclass(frozen=True)
class StageData:
    """A split held whole on the training device; batches are built by indexing (no DataLoader)."""

    x: torch.Tensor  # (N, 16, 11) long rooms, or for the diffusion stage (N, C, h, w) latents / (N, h, w) code indices
    cond: torch.Tensor  # (N, K) long condition tokens: door sides (+ stairs) (+ room attributes)

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class RoomSet:
    """Rooms with their door sides and stairs flags, as `hmolqd.data` loads them."""

    rooms: torch.Tensor  # (N, 16, 11) tile indices
    doors: torch.Tensor  # (N, 4) door sides
    stairs: torch.Tensor  # (N,) stairs flags


@dataclass(frozen=True)
class RunData:
    """The corpus of one run, split by whole dungeons."""

    train: RoomSet  # what the model trains on (mirrors and redrawn doors included), on the training device
    val: RoomSet  # the held-out dungeons, on the training device
    ref: RoomSet  # what generation metrics compare against: the training rooms with mirrors (as `evaluate` does)


class VQVAEObjective(nn.Module):
    def __init__(self, gen: RoomModel, cfg: Config) -> None:
        super().__init__()
        self.vqvae = gen.vqvae
        self.rare_tile_weight, self.beta = cfg.train.rare_tile_weight, cfg.train.commitment_beta

    def forward(self, rooms: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.vqvae.loss(rooms, rare_tile_weight=self.rare_tile_weight, commitment_beta=self.beta)


class DiffusionObjective(nn.Module):
    def __init__(self, gen: RoomModel, cfg: Config) -> None:
        super().__init__()
        self.diffusion = gen.diffusion
        self.drop_prob = cfg.train.cond_drop_prob

    def forward(self, z0: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.diffusion.loss(z0, cond, drop_prob=self.drop_prob)


class JointObjective(nn.Module):
    """Stage 3: the reconstruction loss plus the diffusion loss on latents that now move with the encoder."""

    def __init__(self, gen: RoomModel, cfg: Config) -> None:
        super().__init__()
        self.rec = VQVAEObjective(gen, cfg)
        self.diff = DiffusionObjective(gen, cfg)

    def forward(self, rooms: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rec_loss, rec_metrics = self.rec(rooms, cond)
        diff_loss, diff_metrics = self.diff(self.rec.vqvae.encode(rooms), cond)
        metrics = {**rec_metrics, **{f"diffusion_{k}": v for k, v in diff_metrics.items()}}
        return rec_loss + diff_loss, metrics


# The loss of a stage follows from the parts it trains: the VQ-VAE's reconstruction, the denoiser's diffusion
# loss, or both with the diffusion loss on latents that move with the encoder.
_OBJECTIVE_OF_PARTS: dict[tuple[str, ...], type[nn.Module]] = {
    ("vqvae",): VQVAEObjective,
    ("diffusion",): DiffusionObjective,
    ("vqvae", "diffusion"): JointObjective,
}


def objective(gen: RoomModel, stage: Stage, cfg: Config) -> nn.Module:
    if stage.trains not in _OBJECTIVE_OF_PARTS:
        raise ValueError(
            f"stage {stage.name!r} trains {stage.trains}: no objective for those parts; "
            f"the objectives train {sorted(_OBJECTIVE_OF_PARTS)}"
        )
    return _OBJECTIVE_OF_PARTS[stage.trains](gen, cfg)


def stage_epochs(cfg: Config, stage: Stage) -> int:
    return int(getattr(cfg.train, stage.epochs_key))


def trained_modules(gen: RoomModel, stage: Stage) -> list[nn.Module]:
    """Stage 1 trains the VQ-VAE, stage 2 the denoiser on the frozen VQ-VAE, stage 3 both (`Stage.trains`)."""
    return [gen.parts()[name] for name in stage.trains]


def trainable(gen: RoomModel, stage: Stage) -> list[nn.Parameter]:
    return [p for m in trained_modules(gen, stage) for p in m.parameters()]


def set_train_mode(gen: RoomModel, stage: Stage) -> None:
    gen.eval()
    gen.vqvae.requires_grad_(stage.trains_vqvae)
    gen.diffusion.requires_grad_(stage.trains_denoiser)
    gen.ema.requires_grad_(False)
    for module in trained_modules(gen, stage):
        module.train()


@torch.no_grad()
def encode_all(gen: RoomModel, rooms: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Continuous VQ-VAE latents `(N, C, h, w)` of rooms `(N, 16, 11)`, in eval mode (no codebook updates)."""
    with eval_mode(gen.vqvae):
        return torch.cat([gen.vqvae.encode(rooms[i : i + batch_size]) for i in range(0, len(rooms), batch_size)])


@torch.no_grad()
def encode_codes(gen: RoomModel, rooms: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """VQ-VAE code indices `(N, h, w)` long of rooms `(N, 16, 11)`, in eval mode (no codebook updates)."""
    return torch.cat([gen.vqvae.quantizer.nearest(z) for z in encode_all(gen, rooms, batch_size).split(batch_size)])


def stage_data(
    gen: RoomModel, stage: Stage, rooms: torch.Tensor, doors: torch.Tensor, stairs: torch.Tensor
) -> StageData:
    if gen.cfg.model_kind == "discrete":  # the condition is measured on each room, attributes included
        x = encode_codes(gen, rooms) if stage.on_latents else rooms.long()
        return StageData(x=x, cond=gen.diffusion.room_condition(rooms))
    cond = condition_tokens(
        doors, stairs if gen.cfg.cond_stairs else None, n=len(rooms), cond_stairs=gen.cfg.cond_stairs
    ).to(rooms.device)
    x = encode_all(gen, rooms) if stage.on_latents else rooms.long()
    return StageData(x=x, cond=cond)


def start_diffusion_stage(gen: RoomModel, data: StageData, rooms: torch.Tensor) -> None:
    """A fresh diffusion stage: latent scale (continuous: unit-variance latents, Rombach et al. 2022) or the
    code permutations of the two mirrors (discrete), then the EMA starts from the denoiser."""
    if gen.cfg.model_kind == "discrete":
        gen.diffusion.set_mirror_maps(data.x, encode_codes(gen, rooms.flip(1)), encode_codes(gen, rooms.flip(2)))
    else:
        gen.diffusion.set_latent_scale(data.x)
    gen.reset_ema()

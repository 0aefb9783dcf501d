"""VQ-VAE room tokenizer (van den Oord et al. 2017): 16x11 tile rooms <-> a small grid of codebook vectors.

A room `(B, 16, 11)` of tile indices (0..9, see hmolqd.data.tiles.TILES) is one-hot encoded to
`(B, 10, 16, 11)`, padded inside the model with one all-zero column to `(B, 10, 16, 12)` (so that 2x and 4x
downsampling divide evenly; all-zero marks "outside the room"), encoded to a continuous latent grid
`z_e (B, latent_dim, h, w)`, snapped to the nearest codes of an EMA codebook (hmolqd.models.quantizer), and
decoded to tile logits that are cropped back to `(B, 10, 16, 11)`.

ModelConfig keys used here (hmolqd/config.py):
* `num_embeddings`: codebook size K, the number of distinct code vectors (tokens) the latent grid can hold.
* `latent_dim`: size D of one code vector = channels of the latent grid the diffusion model works in.
* `embedding_dim`: hidden width (conv channels) of the encoder and decoder; sets capacity and cost.
* `downsample`: 1, 2 or 4; the padded 16x12 room becomes a latent grid of 16x12, 8x6 or 4x3 cells, each
  cell standing for a 1x1, 2x2 or 4x4 tile patch (its receptive field is wider: the 3x3 convs see neighbours).
The codebook's EMA decay comes from TrainConfig.codebook_decay (constructor argument `codebook_decay`).

Preset that meets the tokenizer bar on held-out dungeons (bench/vqvae_bar.py): downsample=2, embedding_dim=64,
latent_dim=64, num_embeddings=512, 40 epochs of mirror-augmented rooms, AdamW lr 2e-3, batch 32 (385k parameters,
~1.5 CPU-minutes). downsample=4 reaches the bar only marginally (embedding_dim=128, 60 epochs).

Architecture (shapes for C = embedding_dim, D = latent_dim, s = downsample):
  encoder: 3x3 conv 10->C at 16x12, log2(s) x [ReLU, 4x4 stride-2 conv C->C], ReLU, 3x3 conv C->C,
           RES_BLOCKS residual blocks, ReLU, 1x1 conv C->D             -> z_e (B, D, 16/s, 12/s)
  decoder: 3x3 conv D->C, RES_BLOCKS residual blocks, log2(s) x [ReLU, 4x4 stride-2 transposed conv C->C],
           ReLU, 3x3 conv C->10 at 16x12, crop the padding column      -> logits (B, 10, 16, 11)
With `vq_local` the encoder is one s x s stride-s conv (a linear, injective map of the one-hot patch) and
RES_BLOCKS point-wise residual blocks: a code is a function of its own tile patch (a patch type), so the
code model cannot memorise context-dependent symbols, and a mirrored patch maps to a fixed code. The
decoder keeps its 3x3 context. With `column_pad = "center"` the 12th column is a copy of the centre column 5
(columns 0..5, 5..10) instead of zeros: mirroring the room about its centre column then mirrors the code
grid exactly (11 columns are odd, so no zero padding can), and the decoder's two copies of column 5 vote.

Loss: class-weighted cross-entropy (door D and stair S weighted by `rare_tile_weight`) + commitment_beta *
commitment loss; the codebook itself follows the EMA update, not the gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hmolqd.config import ModelConfig
from hmolqd.data.tiles import DOOR, NUM_TILES, ROOM_H, ROOM_W, STAIR
from hmolqd.models.modes import eval_mode
from hmolqd.models.quantizer import (
    QuantizeOut,
    VectorQuantizerEMA,
    code_histogram,
    codebook_usage,
)

PADDED_W = 12  # ROOM_W + 1 padding column: 16x12 divides by 2 and 4
CENTER_COLUMNS = list(range(ROOM_W // 2 + 1)) + list(range(ROOM_W // 2, ROOM_W))  # column_pad "center": 0..5, 5..10
RES_BLOCKS = 2  # residual blocks at the latent resolution, in encoder and decoder
DEAD_CODE_STEPS = 50  # training updates without an assignment before a code is restarted


class VQVAEOut(NamedTuple):
    logits: torch.Tensor  # (B, 10, 16, 11)
    commit_loss: torch.Tensor  # ()
    indices: torch.Tensor  # (B, h, w) long
    perplexity: torch.Tensor  # () of this batch's code histogram


class ResBlock(nn.Module):
    """x + 1x1conv(ReLU(3x3conv(ReLU(x)))), the residual block of van den Oord et al. 2017."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PointResBlock(nn.Module):
    """x + 1x1conv(ReLU(1x1conv(ReLU(x)))): a residual block that mixes channels only (no spatial context)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _encoder(cfg: ModelConfig) -> nn.Sequential:
    c = cfg.embedding_dim
    if cfg.vq_local:
        # No ReLU outside the residual branches: the first conv is an injective linear map of the one-hot
        # patch, and the residual blocks keep distinct patches apart.
        s = cfg.downsample
        return nn.Sequential(
            nn.Conv2d(NUM_TILES, c, s, stride=s),
            *[PointResBlock(c) for _ in range(RES_BLOCKS)],
            nn.Conv2d(c, cfg.latent_dim, 1),
        )
    layers: list[nn.Module] = [nn.Conv2d(NUM_TILES, c, 3, padding=1)]
    for _ in range(int(math.log2(cfg.downsample))):
        layers += [nn.ReLU(), nn.Conv2d(c, c, 4, stride=2, padding=1)]  # halves h and w
    layers += [nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)]
    layers += [ResBlock(c) for _ in range(RES_BLOCKS)]
    layers += [nn.ReLU(), nn.Conv2d(c, cfg.latent_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(cfg: ModelConfig) -> nn.Sequential:
    c = cfg.embedding_dim
    layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, c, 3, padding=1)]
    layers += [ResBlock(c) for _ in range(RES_BLOCKS)]
    for _ in range(int(math.log2(cfg.downsample))):
        layers += [nn.ReLU(), nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)]  # doubles h and w
    layers += [nn.ReLU(), nn.Conv2d(c, NUM_TILES, 3, padding=1)]
    return nn.Sequential(*layers)


def tile_class_weights(rare_tile_weight: float, device: torch.device | None = None) -> torch.Tensor:
    """(10,) cross-entropy weights: 1 for every tile, `rare_tile_weight` for door D and stair S."""
    weights = torch.ones(NUM_TILES, device=device)
    weights[DOOR] = rare_tile_weight
    weights[STAIR] = rare_tile_weight
    return weights


def vqvae_loss(
    out: VQVAEOut, rooms: torch.Tensor, *, rare_tile_weight: float, commitment_beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(forward output, target rooms (B, 16, 11)) -> (loss, logs); pure function.

    loss = cross-entropy with tiles D and S weighted by `rare_tile_weight` (weighted mean over tiles)
           + commitment_beta * commitment loss (van den Oord et al. 2017, eq. 3; the codebook term is replaced
           by the EMA update). logs: detached 0-dim tensors ce, commit, accuracy, perplexity (no host sync).
    """
    target = rooms.to(out.logits.device).long()  # (B, 16, 11)
    weights = tile_class_weights(rare_tile_weight, out.logits.device)
    ce = F.cross_entropy(out.logits.float(), target, weight=weights)
    total = ce + commitment_beta * out.commit_loss
    accuracy = (out.logits.argmax(dim=1) == target).float().mean()
    logs = {
        "ce": ce.detach(),
        "commit": out.commit_loss.detach(),
        "accuracy": accuracy.detach(),
        "perplexity": out.perplexity.detach(),
    }
    return total, logs


class VQVAE(nn.Module):
    """Room tokenizer: `(B, 16, 11)` tile indices <-> `(B, latent_dim, h, w)` quantized latents."""

    def __init__(self, cfg: ModelConfig, codebook_decay: float = 0.99) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _encoder(cfg)
        self.quantizer = VectorQuantizerEMA(
            cfg.num_embeddings, cfg.latent_dim, codebook_decay, DEAD_CODE_STEPS, cfg.codebook_restart
        )
        self.decoder = _decoder(cfg)
        # CENTER_COLUMNS as an index tensor that moves with the model: indexing with the list itself copies it to
        # the GPU in every forward, a host sync; the same index, so the same values and memory layout (not saved)
        self.register_buffer("center_columns", torch.tensor(CENTER_COLUMNS), persistent=False)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(latent_dim, h, w) of one room's latent grid: (D, 16/s, 12/s)."""
        s = self.cfg.downsample
        return (self.cfg.latent_dim, ROOM_H // s, PADDED_W // s)

    # ---- pieces ----
    def one_hot(self, rooms: torch.Tensor) -> torch.Tensor:
        """(B, 16, 11) integer tile indices -> (B, 10, 16, 12) float one-hot, padded per `column_pad`."""
        if rooms.dim() != 3 or tuple(rooms.shape[1:]) != (ROOM_H, ROOM_W):
            raise ValueError(f"rooms must have shape (B, {ROOM_H}, {ROOM_W}) of tile indices, got {tuple(rooms.shape)}")
        if rooms.dtype.is_floating_point or rooms.dtype == torch.bool:
            raise TypeError(f"rooms must hold integer tile indices (long or uint8), got dtype {rooms.dtype}")
        rooms = rooms.long()
        if rooms.device.type == "cpu" and rooms.numel() and (int(rooms.min()) < 0 or int(rooms.max()) >= NUM_TILES):
            # Checked on CPU only: on an accelerator this would force a host sync every step.
            raise ValueError(
                f"tile indices must lie in [0, {NUM_TILES}), got range [{int(rooms.min())}, {int(rooms.max())}]"
            )
        x = F.one_hot(rooms, NUM_TILES).permute(0, 3, 1, 2).float()  # (B, 10, 16, 11)
        if self.cfg.column_pad == "center":
            return x[..., self.center_columns.to(x.device)]  # (B, 10, 16, 12)
        return F.pad(x, (0, PADDED_W - ROOM_W))  # (B, 10, 16, 12)

    def encode(self, rooms: torch.Tensor) -> torch.Tensor:
        """(B, 16, 11) tile indices -> z_e (B, latent_dim, h, w), continuous (before quantization)."""
        device = self.quantizer.embedding.device
        return self.encoder(self.one_hot(rooms.to(device)))

    def quantize(self, z: torch.Tensor) -> QuantizeOut:
        """(B, latent_dim, h, w) -> QuantizeOut; in training mode this also updates the EMA codebook."""
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got {tuple(z.shape)}"
            )
        return self.quantizer(z)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim, h, w) -> tile logits (B, 10, 16, 11) (padding column cropped)."""
        if tuple(z_q.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got {tuple(z_q.shape)}"
            )
        logits = self.decoder(z_q)  # (B, 10, 16, 12)
        if self.cfg.column_pad == "center":  # the two copies of column 5 vote together
            mid = ROOM_W // 2
            both = 0.5 * (logits[..., mid : mid + 1] + logits[..., mid + 1 : mid + 2])
            return torch.cat([logits[..., :mid], both, logits[..., mid + 2 :]], dim=-1)  # (B, 10, 16, 11)
        return logits[..., :ROOM_W]

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Any latents (B, latent_dim, h, w), e.g. diffusion samples -> tile indices (B, 16, 11) long.

        Snaps each cell to its nearest code (no codebook update), decodes, and takes the argmax tile.
        """
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got {tuple(z.shape)}"
            )
        indices = self.quantizer.nearest(z)  # (B, h, w)
        return self.decode(self.quantizer.lookup(indices)).argmax(dim=1)

    def forward(self, rooms: torch.Tensor) -> VQVAEOut:
        q = self.quantize(self.encode(rooms))
        return VQVAEOut(self.decode(q.z_q), q.commit_loss, q.indices, q.perplexity)

    def loss(
        self, rooms: torch.Tensor, *, rare_tile_weight: float, commitment_beta: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss = weighted cross-entropy + commitment_beta * commitment loss (see `vqvae_loss`).

        Under DDP call the wrapper's forward instead (`vqvae_loss(ddp_model(rooms), rooms, ...)`), so that
        DDP sees the forward pass; this method calls the module directly.
        """
        return vqvae_loss(self(rooms), rooms, rare_tile_weight=rare_tile_weight, commitment_beta=commitment_beta)

    @torch.no_grad()
    def evaluate(self, rooms: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
        """Reconstruction metrics over `rooms` (N, 16, 11), in eval mode (no codebook update).

        tile_accuracy: fraction of tiles reconstructed; room_accuracy: fraction of rooms reconstructed exactly;
        codebook_usage: fraction of the K codes used by these rooms; perplexity: exp(entropy) of that code histogram.
        """
        if len(rooms) == 0:
            raise ValueError("evaluate() needs at least one room")
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size}: must be >= 1")
        with eval_mode(self):
            device = self.quantizer.embedding.device
            counts = torch.zeros(self.cfg.num_embeddings, device=device)
            tiles_ok = torch.zeros((), device=device)
            rooms_ok = torch.zeros((), device=device)
            for start in range(0, len(rooms), batch_size):
                batch = rooms[start : start + batch_size].to(device).long()
                out = self(batch)
                same = out.logits.argmax(dim=1) == batch  # (b, 16, 11)
                tiles_ok += same.sum()
                rooms_ok += same.flatten(1).all(dim=1).sum()
                counts += code_histogram(out.indices, self.cfg.num_embeddings)
            used, perplexity = codebook_usage(counts)
        n = len(rooms)
        return {
            "tile_accuracy": float(tiles_ok) / (n * ROOM_H * ROOM_W),
            "room_accuracy": float(rooms_ok) / n,
            "codebook_usage": float(used),
            "perplexity": float(perplexity),
        }

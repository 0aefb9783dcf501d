"""`TrainConfig`: the optimisation of every stage (batch, epochs per stage, learning-rate schedule, EMA,
loss weights, mixed precision), frozen. Every field is a flat config key."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hmolqd.settings.rules import at_least, check

AMP_DTYPES: tuple[str, ...] = ("fp16", "bf16")  # the forced values of `use_amp` besides true / false


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32  # rooms per optimizer step (per process under DDP)
    vqvae_epochs: int = 35  # stage 1: VQ-VAE epochs
    num_epochs: int = 150  # stage 2: diffusion epochs (the seed's key)
    joint_epochs: int = 0  # stage 3: optional joint fine-tuning (continuous model only)
    learning_rate: float = 1.5e-3  # peak AdamW learning rate (all stages)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * learning_rate
    min_lr_ratio: float = 0.1  # the cosine decay ends at min_lr_ratio * learning_rate
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.998  # EMA of the denoiser used for sampling
    codebook_decay: float = 0.99  # EMA codebook update rate
    commitment_beta: float = 0.25  # VQ commitment loss weight (van den Oord et al. 2017)
    rare_tile_weight: float = 4.0  # cross-entropy weight of the rare tiles D and S
    cond_drop_prob: float = 0.1  # classifier-free guidance condition dropout (Ho & Salimans 2022)
    # Forcing "fp16" / "bf16" runs torch.autocast("cpu", ...) (+ torch.amp.GradScaler("cpu") for fp16) on a CPU: how
    # CI runs the GPU's mixed-precision paths without a GPU (slow on CPUs without native fp16/bf16 kernels). Weights,
    # optimizer state and checkpoints stay float32 in every mode, so a run may resume under another use_amp value.
    #: true: GPU bf16 (sm_80+) / fp16 + GradScaler, CPU off; false: fp32; "fp16"/"bf16": forced
    use_amp: bool | str = True

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        # The stages' epoch counts are checked by hmolqd.config.Config, which reads them off its STAGE_TABLE.
        at_least(self, ("warmup_steps",), 0)
        ok = self.learning_rate > 0 and math.isfinite(self.learning_rate)
        check(ok, "learning_rate", "must be > 0", self.learning_rate)
        at_least(self, ("weight_decay",), 0)
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]", self.min_lr_ratio)
        check(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)", self.grad_clip)
        for key in ("ema_decay", "codebook_decay"):
            check(0 <= getattr(self, key) < 1, key, "must be in [0, 1)", getattr(self, key))
        at_least(self, ("commitment_beta",), 0)
        check(self.rare_tile_weight > 0, "rare_tile_weight", "must be > 0", self.rare_tile_weight)
        check(0 <= self.cond_drop_prob < 1, "cond_drop_prob", "must be in [0, 1)", self.cond_drop_prob)
        check(
            isinstance(self.use_amp, bool) or self.use_amp in AMP_DTYPES,
            "use_amp",
            "must be true (auto: bf16 on GPUs with compute capability >= 8.0, fp16 + GradScaler below, off on CPU), "
            "false (fp32), 'fp16' or 'bf16' (that autocast dtype forced on any device, CPU included)",
            self.use_amp,
        )

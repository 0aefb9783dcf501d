"""`ConditionedDiffusion`: what the two diffusion models over the VQ-VAE's grid share - their room condition
(door sides, + has-stairs with `cond_stairs`, + the room attributes where the model takes them; see
hmolqd.data.attributes) and a `forward` that is the training loss.

CodeDiffusion (hmolqd.models.code_diffusion) takes the attributes when `ModelConfig.cond_attributes`;
LatentDiffusion (hmolqd.models.latent_diffusion) never does.
"""

from __future__ import annotations

import torch
from torch import nn

from hmolqd.config import ModelConfig
from hmolqd.data.attributes import cond_size, condition_groups, condition_tokens, room_condition


class ConditionedDiffusion(nn.Module):
    """Base of the diffusion models: `cond_size` K condition columns, dropped in training by `groups`;
    subclasses define `loss(x0, cond, *, drop_prob)`."""

    def __init__(self, cfg: ModelConfig, cond_attributes: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.cond_attributes = cond_attributes
        self.cond_size = cond_size(cfg.cond_stairs, cond_attributes)
        self.groups = condition_groups(cfg.cond_stairs, cond_attributes)

    def condition_tokens(
        self, doors: torch.Tensor | None, stairs: torch.Tensor | None, n: int, attributes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(n, K)` CPU tokens (hmolqd.data.attributes.condition_tokens); None leaves a group open."""
        return condition_tokens(
            doors, stairs, attributes, n=n, cond_stairs=self.cfg.cond_stairs, cond_attributes=self.cond_attributes
        )

    def room_condition(self, rooms: torch.Tensor) -> torch.Tensor:
        """The condition tokens `(B, K)` that describe real rooms `(B, 16, 11)`, on their device."""
        return room_condition(rooms, self.cfg.cond_stairs, self.cond_attributes).to(rooms.device)

    def forward(
        self, x0: torch.Tensor, cond: torch.Tensor, *, drop_prob: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Same as `loss`, so that a DistributedDataParallel wrapper sees the training computation in forward."""
        return self.loss(x0, cond, drop_prob=drop_prob)

    def loss(
        self, x0: torch.Tensor, cond: torch.Tensor, *, drop_prob: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} must define loss(x0, cond, *, drop_prob)")

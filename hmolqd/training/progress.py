"""Where training stands (`Progress`) and the arithmetic of epochs: the data order, the steps of a stage, and
whether a resumed run has anything left to train. Pure functions of the config, the counters and the table
of stages (`hmolqd.config.STAGE_TABLE`), kept apart from the loop that drives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hmolqd.config import Config, stage_named, stage_names, stages
from hmolqd.training.runtime import Runtime
from hmolqd.training.stages import stage_epochs


@dataclass(kw_only=True)
class Progress:
    """Where training stands; saved in every checkpoint and restored on resume. Only its methods change it."""

    stage: str = field(default_factory=lambda: stage_names()[0])
    stage_step: int = 0  # optimizer steps done in this stage
    global_step: int = 0  # optimizer steps done in all stages
    epochs_done: int = 0  # epochs of this stage whose validation and epoch checkpoint are done
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # running train loss of the epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_samples: int = 0  # rooms of this rank's share of the current epoch already trained on (any batch size)
    epoch_batches: int = 0  # optimizer steps in the current epoch (the mean train loss divides by it)
    # steps of the epoch the fp16 GradScaler skipped (inf/NaN gradients; 0 without fp16): a device tensor while the
    # epoch runs (added up without a host sync), read by `skipped_steps`
    epoch_skipped: int | torch.Tensor = 0

    def state(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "stage_step": self.stage_step,
            "global_step": self.global_step,
            "epochs_done": self.epochs_done,
            "loss_sum": self.loss_sum.detach().cpu(),
            "epoch_samples": self.epoch_samples,
            "epoch_batches": self.epoch_batches,
            "epoch_skipped": self.skipped_steps(),
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Progress:
        p = ckpt["progress"]
        # Files of hmolqd <= 0.1.0 count the position in batches of the batch size they were written with.
        position = int(ckpt.get("data_order", {}).get("position", 0))
        samples = p.get("epoch_samples", position * int(ckpt["config"]["train"]["batch_size"]))
        return cls(
            stage=p["stage"],
            stage_step=int(p["stage_step"]),
            global_step=int(p["global_step"]),
            epochs_done=int(p["epochs_done"]),
            loss_sum=p["loss_sum"],
            history=list(ckpt["history"]),
            epoch_samples=int(samples),
            epoch_batches=int(p.get("epoch_batches", position)),
            epoch_skipped=int(p.get("epoch_skipped", 0)),
        )  # files written before the counter: none counted

    def enter_stage(self, stage: str) -> None:
        """A new stage: its counters start at zero (the global step and the history go on)."""
        self.stage, self.stage_step, self.epochs_done = stage, 0, 0
        self._start_epoch(torch.zeros(()))

    def fit_epoch(self, rooms: int) -> None:
        """The position within the epoch, at most this rank's `rooms` of it (a resume on more ranks has fewer)."""
        self.epoch_samples = min(self.epoch_samples, rooms)

    def advance(self, samples: int, loss: torch.Tensor, skipped: int | torch.Tensor) -> None:
        """One optimizer step over `samples` rooms with batch loss `loss` (0-dim) and `skipped` 1 where the fp16
        GradScaler skipped it (an int, or a 0-dim tensor: `Optimization.skipped`); no host sync here."""
        self.loss_sum = self.loss_sum.to(loss.device) + loss.detach().float()
        self.epoch_samples += samples
        self.epoch_batches += 1
        self.epoch_skipped += skipped
        self.stage_step += 1
        self.global_step += 1

    def skipped_steps(self) -> int:
        """The epoch's skipped steps so far (a host read where they are a device tensor)."""
        return int(self.epoch_skipped)

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """The epoch's `record` joins the history and the next epoch starts."""
        self.history.append(record)
        self.epochs_done += 1
        self._start_epoch(torch.zeros((), device=self.loss_sum.device))

    def _start_epoch(self, loss_sum: torch.Tensor) -> None:
        self.loss_sum, self.epoch_samples, self.epoch_batches, self.epoch_skipped = loss_sum, 0, 0, 0


def epoch_permutation(seed: int, stage: str, epoch: int, n: int, rt: Runtime) -> torch.Tensor:
    """This rank's share of one epoch's data order: a pure function of (seed, stage, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + stage_names().index(stage) * 10_007 + epoch)
    perm = torch.randperm(n, generator=g)
    perm = perm[: n - n % rt.world_size][rt.rank :: rt.world_size]
    return perm.to(rt.device)  # one small copy per epoch, none per step


def batches_per_epoch(n: int, cfg: Config, rt: Runtime) -> int:
    return max(1, math.ceil((n // rt.world_size) / cfg.train.batch_size))


def rank_share(n: int, rt: Runtime) -> int:
    """Rooms of one epoch that this rank trains on (`epoch_permutation`'s length)."""
    return (n - n % rt.world_size) // rt.world_size


def stage_total_steps(p: Progress, n: int, epochs: int, cfg: Config, rt: Runtime) -> int:
    """The stage's optimizer steps: those done plus those left at the current batch size (the rest of this
    epoch's rooms, then whole epochs). With an unchanged batch size this is epochs * batches_per_epoch."""
    if p.epochs_done >= epochs:
        return p.stage_step
    this_epoch = math.ceil((rank_share(n, rt) - p.epoch_samples) / cfg.train.batch_size)
    left = this_epoch + (epochs - p.epochs_done - 1) * batches_per_epoch(n, cfg, rt)
    return p.stage_step + max(0, left)


def training_complete(cfg: Config, p: Progress) -> bool:
    """Nothing left to train: the current stage is at (or past) its last epoch and no later stage has epochs."""
    table = stages()
    now = stage_names().index(p.stage)
    return p.epochs_done >= stage_epochs(cfg, table[now]) and all(stage_epochs(cfg, s) == 0 for s in table[now + 1 :])


def past_end_notes(cfg: Config, p: Progress) -> list[str]:
    """What a lowered (or raised, too late) epoch count means for a resumed run."""
    notes = []
    for stage in stages()[: stage_names().index(p.stage)]:
        done = sum(1 for r in p.history if r.get("stage") == stage.name)
        if stage_epochs(cfg, stage) > done:
            notes.append(
                f"{stage.epochs_key}={stage_epochs(cfg, stage)} but stage {stage.name} ended after {done} "
                f"epochs and the run is already in stage {p.stage}: "
                f"the extra {stage.name} epochs are not trained"
            )
    now = stage_named(p.stage)
    end = stage_epochs(cfg, now)
    if p.epochs_done > end or (p.epochs_done == end and p.epoch_samples > 0):
        notes.append(
            f"the run is already past the new end of stage {p.stage}: it trained {p.epochs_done} epochs"
            f"{' and part of the next' if p.epoch_samples else ''}, and {now.epochs_key} is now {end}; "
            f"nothing more is trained in stage {p.stage}"
        )
    return notes

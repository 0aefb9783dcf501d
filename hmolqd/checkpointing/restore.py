"""Loading a checkpoint's states into live objects: models (unwrapped from DDP / compile), optimizer, scaler.

The learning-rate schedule is not restored from a file: it is a pure function of the step
(`hmolqd.training.optim.LRSchedule`), rebuilt from the current config and the saved progress, so a changed
`learning_rate` or epoch count applies on resume without touching any object's private state. RNG states
are restored separately (`hmolqd.checkpointing.rng.restore_rng_state`) so the caller chooses when.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from hmolqd.checkpointing.fileformat import CheckpointError

log = logging.getLogger(__name__)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers, in any nesting."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def state_of(obj: Any) -> Any:
    """A module's (unwrapped) state dict, any other object's state_dict(), or `obj` if it already is one."""
    if isinstance(obj, nn.Module):
        return unwrap_model(obj).state_dict()
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def load_training_state(
    checkpoint: Mapping[str, Any],
    *,
    models: Mapping[str, Any],
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
) -> list[str]:
    """Load `checkpoint` into live objects (any wrapped model is unwrapped); returns notes to log.

    A model named in `models` but absent from the checkpoint, or one whose keys or shapes differ, is an
    error. `scheduler` is for torch schedulers whose state lives in the file; hmolqd's own schedule is rebuilt
    from the config instead (see the module docstring).
    """
    saved = checkpoint["models"]
    missing = [n for n in models if n not in saved]
    if missing:
        raise CheckpointError(f"checkpoint has no state for model(s) {missing}; it holds {sorted(saved)}")
    for name, target in models.items():
        target = unwrap_model(target) if isinstance(target, nn.Module) else target
        try:
            target.load_state_dict(saved[name])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"model {name!r} does not match the checkpoint: {err}") from err
    notes = []
    for key, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None:
            if not checkpoint.get(key):
                raise CheckpointError(f"checkpoint has no {key} state to restore (stage {checkpoint.get('stage')!r})")
            target.load_state_dict(checkpoint[key])
    if scaler is not None:
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        elif scaler.is_enabled():
            notes.append("the checkpoint's GradScaler was disabled: the enabled scaler starts from its initial scale")
    for note in notes:
        log.warning(note)
    return notes

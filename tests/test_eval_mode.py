"""`hmolqd.models.modes.eval_mode`: eval mode inside the block, every submodule's own flag restored after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hmolqd.models.modes import eval_mode


def _mixed() -> nn.Module:
    """A tree whose parts are in different modes, as mid-training (stage 2: a frozen VQ-VAE in eval mode)."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2)))
    model.train()
    model[1].eval()
    model[1][1].train()
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_sets_eval_inside_and_restores_nested_flags() -> None:
    model = _mixed()
    before = _flags(model)
    assert before == [True, True, False, False, True]
    with eval_mode(model) as inside:
        assert inside is model
        assert _flags(model) == [False] * 5
    assert _flags(model) == before


def test_eval_mode_restores_flags_when_the_block_raises() -> None:
    model = _mixed()
    before = _flags(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not any(_flags(model))
        raise RuntimeError("boom")
    assert _flags(model) == before


def test_eval_mode_turns_dropout_off_inside() -> None:
    drop = nn.Dropout(0.5).train()
    x = torch.ones(1000)
    with eval_mode(drop):
        assert torch.equal(drop(x), x)
    assert drop.training
    assert not torch.equal(drop(x), x)

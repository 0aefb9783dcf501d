"""`eval_mode(module)`: a module in eval mode for the length of a `with` block, its own modes restored after.

Sampling, VQ-VAE evaluation and encoding for training run in eval mode (no codebook EMA updates, no dropout)
and may be called in the middle of training, where the parts of a model are in different modes (stage 2
trains the denoiser on a frozen VQ-VAE in eval mode). So the exit restores each submodule's own flag, not
one flag for the whole tree, and it does so when the block raises too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`with eval_mode(model): ...` runs the block with `model.eval()`; on exit (also by an exception) every
    submodule gets back the `training` flag it had on entry. Yields the module."""
    was_training = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in was_training:
            m.training = flag

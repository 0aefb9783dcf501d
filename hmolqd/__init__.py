"""hmolqd: a VQ-VAE + diffusion generator of The Legend of Zelda dungeons and rooms (VGLC), trained for real.

Subpackages, bottom to top (a layer imports only the layers above it in this list):

    settings/        the config sections (data, paths, model, train, run and its parts, SamplingSettings), their rules
    config.py, atomic.py, device.py   the Config facade (stages, presets, flat keys); atomic writes; device resolution
    data/            VGLC parsers, corpus discovery and download, split, augmentation, room facts
                     (playability, attributes)
    render.py        pictures of rooms and dungeon maps
    diffusion/       pure diffusion math (absorbing [MASK] process; noise schedules, DDPM / DDIM steps)
    models/          VQ-VAE, denoiser, discrete code diffusion, latent diffusion, RoomModel
    sampling/        generate(model, n, ...): the discrete sampler, door guidance of the continuous one
    checkpointing/   checkpoint files, manager and background writer, directory lock, run identity, resume,
                     restore, RNG, inference export
    evaluation/      metrics, Markov reference, the quality report
    training/        the training loop, its checkpoint session, stages, validation, runtime, outputs, self-check
    dungeon/         whole dungeons: layouts, grid embedding, key/lock check, rooms from a model, walkability,
                     the player
    illuminate/      layout genomes and a MAP-Elites archive of dungeons (pyribs, the optional extra hmolqd[qd])
    cli/, notebook.py, __main__.py   the edges: the command line (its flags, their checks, the commands)
                     and the notebooks' helpers

Besides the entry points (`__init__`, `__main__`, `config`, `notebook`) three modules sit at the top because
every layer uses them and each is one small job: `atomic` (durable writes), `device` (which torch device a
setting means) and `render` (tile pictures, used by data statistics, training outputs and evaluation).
"""

from __future__ import annotations

from typing import Any

from hmolqd.config import Config, ConfigError

__all__ = ["Config", "ConfigError", "generate", "generate_dungeon", "illuminate", "load_model", "train"]
__version__ = "0.1.0"

# The heavy entry points import torch and matplotlib; load them on first use so `import hmolqd` stays light.
_LAZY = {
    "train": "hmolqd.training.loop",
    "load_model": "hmolqd.checkpointing.export",
    "generate": "hmolqd.sampling.generate",
    "generate_dungeon": "hmolqd.illuminate.api",
    "illuminate": "hmolqd.illuminate.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hmolqd' has no attribute {name!r}")

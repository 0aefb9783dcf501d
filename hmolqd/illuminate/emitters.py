"""The search side of MAP-Elites: the pyribs scheduler and its emitters over the layout genome.

Two iso-line emitters (Vassiliades & Mouret 2018) in the unit box of `hmolqd.illuminate.genome`, each
starting from uniform random genomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hmolqd.illuminate.archive import Descriptor, make_archive
from hmolqd.illuminate.genome import GENOME_DIM, random_genomes

ISO_SIGMA, LINE_SIGMA = 0.1, 0.2  # iso-line emitter steps in the unit box of the genome


def make_scheduler(descriptors: Sequence[Descriptor], seed: int, batch_size: int) -> Any:
    """The pyribs scheduler of a MAP-Elites run: its archive and emitters over the genome's unit box."""
    from ribs.emitters import IsoLineEmitter
    from ribs.schedulers import Scheduler

    archive = make_archive(descriptors, GENOME_DIM, seed)
    half = max(1, batch_size // 2)
    bounds = [(0.0, 1.0)] * GENOME_DIM
    emitters = [
        IsoLineEmitter(
            archive,
            iso_sigma=ISO_SIGMA,
            line_sigma=LINE_SIGMA,
            bounds=bounds,
            batch_size=size,
            seed=seed * 7 + k,
            initial_solutions=random_genomes(size, seed * 7 + k),
        )
        for k, size in enumerate((half, batch_size - half))
        if size
    ]
    return Scheduler(archive, emitters)

"""The search side of MAP-Elites: the pyribs scheduler and its emitters over the layout genome.

Two iso-line emitters (Vassiliades & Mouret 2018) in the unit box of `hmolqd.illuminate.genome`: the first
starts from the 18 real templates' genomes (`template_genomes`, where today's generator samples: small
dungeons with long solution paths that random genomes rarely give), the second from uniform random genomes.
The first parent of each offspring is drawn from the elites in proportion to their empty face-neighbour
cells (`hmolqd.illuminate.frontier`; pyribs' own emitter draws it uniformly): a genome's seed knob makes its
descriptors a random draw near its parent's, so parents at the edge of the filled region are the ones
whose offspring can land in new cells.

Measured with the model-free proxy (`bench/search_proxy.py`, plain rooms, 2,000 evaluations; see
bench/ILLUMINATE.md): these two changes together gave the most cells of the variants tried; CMA-ME
(`EvolutionStrategyEmitter`, two-stage improvement ranker), a CMA-ME + iso-line mix, other iso sigmas,
a squared key-share knob, coarse seed knobs and squared frontier weights gave no more. With the genome's
`detour` knob (a key behind a dead-end detour) this search fills 50.7 % of the cells over 3 seeds (48.1 %
before the knob; 2.02x the proxy baseline's 25.1 %). CMA-MAE (Fontaine & Nikolaidis 2023: an annealing
archive, `learning_rate` 0.01 or 0.1, `threshold_min` 0, improvement ranker, a separate result archive) gave
fewer cells on seed 0: five CMA-MAE emitters 633 (learning rate 0.01) and 704 (0.1), half iso-line half
CMA-MAE 719, and with the detour knob 767 (learning rate 0.1, genomes clipped into the box) against 837 for
these two emitters with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hmolqd.illuminate.archive import Descriptor, make_archive
from hmolqd.illuminate.genome import GENOME_DIM, random_genomes, template_genomes

ISO_SIGMA, LINE_SIGMA = 0.1, 0.2  # iso-line emitter steps in the unit box of the genome


def make_scheduler(descriptors: Sequence[Descriptor], seed: int, batch_size: int) -> Any:
    """The pyribs scheduler of a MAP-Elites run: its archive and emitters over the genome's unit box."""
    from ribs.schedulers import Scheduler

    from hmolqd.illuminate.frontier import FrontierIsoLineEmitter

    archive = make_archive(descriptors, GENOME_DIM, seed)
    half = max(1, batch_size // 2)
    bounds = [(0.0, 1.0)] * GENOME_DIM
    emitters = [
        FrontierIsoLineEmitter(
            archive,
            iso_sigma=ISO_SIGMA,
            line_sigma=LINE_SIGMA,
            bounds=bounds,
            batch_size=size,
            seed=seed * 7 + k,
            initial_solutions=start(size, seed * 7 + k),
        )
        for k, (size, start) in enumerate(((half, template_genomes), (batch_size - half, random_genomes)))
        if size
    ]
    return Scheduler(archive, emitters)

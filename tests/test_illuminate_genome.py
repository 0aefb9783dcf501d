"""The search's starting genomes and its frontier selection (hmolqd.illuminate.genome, .frontier)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hmolqd.dungeon.play import play_layout
from hmolqd.dungeon.sampler import REAL_TEMPLATES
from hmolqd.illuminate.genome import (
    GENOME_DIM,
    KNOB_NAMES,
    add_detour,
    decode,
    knob_values,
    random_genomes,
    template_genomes,
)


def test_template_genomes_decode_to_the_real_templates_statistics() -> None:
    genomes = template_genomes(len(REAL_TEMPLATES), seed=0)
    assert genomes.shape == (len(REAL_TEMPLATES), GENOME_DIM)
    assert np.array_equal(genomes, template_genomes(len(REAL_TEMPLATES), seed=0))
    assert not np.array_equal(genomes, template_genomes(len(REAL_TEMPLATES), seed=1))
    assert ((genomes >= 0) & (genomes <= 1)).all()
    # one genome per template: its knobs are that template's numbers (room count jittered by at most 20 %)
    keys = sorted((round(knob_values(g)["key_share"], 6), round(knob_values(g)["cycle_rate"], 6)) for g in genomes)
    real = sorted((round(t.key_share, 6), round(t.cycle_rate, 6)) for t in REAL_TEMPLATES)
    assert np.allclose(keys, real, atol=1e-6)
    for g in genomes:
        v = knob_values(g)
        assert v["add_rooms"] == v["add_loops"] == v["move_locks"] == v["detour"] == 0
        assert play_layout(decode(g)).beaten
    assert KNOB_NAMES[-1] == "seed"


def test_frontier_weights_count_empty_neighbour_cells() -> None:
    pytest.importorskip("ribs")
    from ribs.archives import GridArchive

    from hmolqd.illuminate.frontier import INTERIOR_WEIGHT, frontier_weights

    archive = GridArchive(solution_dim=1, dims=[3, 3], ranges=[(0, 3), (0, 3)], seed=0)
    # a full column of three cells: each has two empty neighbours (past the grid's edge is no cell)
    archive.add(np.array([[0.0], [1.0], [2.0]]), np.zeros(3), np.array([[0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]))
    solutions, weights = frontier_weights(archive)
    by_solution = dict(zip(solutions[:, 0].tolist(), weights.tolist()))
    assert by_solution == {0.0: 2.0, 1.0: 2.0, 2.0: 2.0}
    archive.add(np.array([[3.0], [4.0]]), np.zeros(2), np.array([[1.5, 0.5], [1.5, 2.5]]))
    solutions, weights = frontier_weights(archive)
    by_solution = dict(zip(solutions[:, 0].tolist(), weights.tolist()))
    assert by_solution[1.0] == INTERIOR_WEIGHT  # all four neighbours filled
    assert by_solution[0.0] == 2.0 and by_solution[3.0] == 2.0


def test_a_detour_puts_a_needed_key_at_the_end_of_new_rooms_and_keeps_the_layout_beatable() -> None:
    grew = 0
    for k, g in enumerate(random_genomes(30, seed=5)):
        layout = decode(g)
        before = play_layout(layout)
        out = add_detour(layout, random.Random(k), 4, 0.5)
        assert add_detour(layout, random.Random(k), 0, 0.5) is layout  # length 0: no detour
        after = play_layout(out)
        assert after.beaten
        if out is layout:
            continue
        grew += 1
        new = out.rooms[len(layout.rooms) :]
        assert 1 <= len(new) <= 4 and "k" in new[-1].labels
        assert after.key_doors == before.key_doors + 1
        assert set(out.slots.values()) >= set(layout.slots.values()) and len(set(out.slots.values())) == len(out.rooms)
    assert grew >= 10  # 14 of these 30: the rest have no door of the way to lock, or no free slot

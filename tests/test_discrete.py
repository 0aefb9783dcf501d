"""The discrete room model: room attributes as conditions, CodeDiffusion, sampling and old checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import TINY_MODEL, randomize_zero_init

from hmolqd.checkpointing.export import load_model
from hmolqd.config import Config, ModelConfig, SamplingSettings
from hmolqd.data import load_corpus, split_corpus
from hmolqd.data.attributes import (
    ABSENT,
    ATTRIBUTES,
    PRESENT,
    UNKNOWN,
    attribute_request,
    condition_groups,
    condition_tokens,
    drop_condition,
    room_attributes,
)
from hmolqd.data.dataset import augment_doors, with_doors
from hmolqd.data.tiles import ELEMENT, FLOOR, MONSTER, ROOM_H, ROOM_W, STAIR, WALL, door_sides
from hmolqd.evaluation.metrics import symmetric_mask
from hmolqd.models.code_diffusion import local_attention_mask
from hmolqd.models.room_model import RoomModel
from hmolqd.sampling.discrete import attribute_tokens, mirror_request
from hmolqd.sampling.generate import generate

# downsample 2 (the default), not the tiny model's 4: the shapes below are of the 8 x 6 code grid.
TINY = {**TINY_MODEL, "downsample": 2}
FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"


def plain_room(doors: tuple[bool, bool, bool, bool] = (True, False, False, False)) -> torch.Tensor:
    room = torch.full((ROOM_H, ROOM_W), WALL, dtype=torch.uint8)
    room[2:14, 2:9] = FLOOR
    return with_doors(room[None], torch.tensor([doors]))[0]


@pytest.fixture
def model() -> RoomModel:
    m = RoomModel.from_config(Config.from_flat({**TINY, "sample_steps": 4}))
    randomize_zero_init(m.diffusion.denoiser)
    m.reset_ema()
    return m.eval()


# ---------------------------------------------------------------- attributes


def test_attributes_are_measured_on_the_room() -> None:
    plain = plain_room()
    lava = plain.clone()
    lava[5, 3] = ELEMENT
    crowd = plain.clone()
    crowd[4, 4] = MONSTER  # breaks the mirror symmetry of the interior
    attrs = room_attributes(torch.stack([plain, lava, crowd]))
    assert attrs.shape == (3, len(ATTRIBUTES)) and ATTRIBUTES == (
        "monsters",
        "water",
        "playable",
        "symmetric",
        "mirror_rows",
        "mirror_cols",
    )
    assert attrs.tolist() == [
        [False, False, True, True, True, True],
        [False, True, True, False, False, False],
        [True, False, True, False, False, False],
    ]
    assert torch.equal(attrs[:, 3], symmetric_mask(torch.stack([plain, lava, crowd])))  # one definition of symmetric


def test_condition_tokens_with_attributes_and_open_entries() -> None:
    doors = torch.tensor([[True, False, False, True]])
    attrs = torch.tensor([[PRESENT, UNKNOWN, PRESENT, PRESENT, UNKNOWN, ABSENT]])
    tokens = condition_tokens(doors, torch.tensor([False]), attrs, n=1, cond_stairs=True, cond_attributes=True)
    assert tokens.tolist() == [
        [PRESENT, ABSENT, ABSENT, PRESENT, ABSENT, PRESENT, UNKNOWN, PRESENT, PRESENT, UNKNOWN, ABSENT]
    ]
    with pytest.raises(ValueError, match="cond_attributes is False"):
        condition_tokens(doors, None, attrs, n=1, cond_stairs=True, cond_attributes=False)
    with pytest.raises(ValueError, match="UNKNOWN=2"):
        condition_tokens(None, None, torch.full((1, 6), 3), n=1, cond_stairs=True, cond_attributes=True)


def test_attribute_requests_name_their_keys() -> None:
    out = attribute_request(
        2, {"monsters": True, "water": "no", "playable": torch.tensor([True, False])}, {"symmetric": "yes"}
    )
    assert out.tolist() == [
        [PRESENT, ABSENT, PRESENT, PRESENT, UNKNOWN, UNKNOWN],
        [PRESENT, ABSENT, ABSENT, PRESENT, UNKNOWN, UNKNOWN],
    ]
    with pytest.raises(ValueError, match="unknown room attribute 'enemies'.*monsters"):
        attribute_request(1, {"enemies": True}, {})
    with pytest.raises(ValueError, match="'maybe'"):
        attribute_request(1, {"water": "maybe"}, {})


def test_each_condition_group_is_dropped_on_its_own() -> None:
    cond = torch.zeros(20000, 11, dtype=torch.long)
    dropped = drop_condition(cond, 0.2, condition_groups(True, True)) == UNKNOWN  # (B, 11)
    assert bool((dropped[:, :4].all(1) == dropped[:, :4].any(1)).all())  # door sides drop together
    assert dropped[:, 7].float().mean().item() == pytest.approx(0.36, abs=0.02)  # row 0.2, then its own group 0.2
    assert (dropped[:, 7] & dropped[:, 8]).float().mean().item() == pytest.approx(0.2 + 0.8 * 0.04, abs=0.02)


def test_redrawn_doors_keep_the_interior() -> None:
    from hmolqd.data.vglc import Corpus, RoomMeta

    rooms = torch.stack([plain_room(), plain_room((False, True, True, False))])
    meta = tuple(
        RoomMeta("x", 1, 1, 0, i, (1, 2), tuple(door_sides(rooms[i : i + 1])[0].tolist()), False, (-1,) * 4)
        for i in range(2)
    )
    out = augment_doors(Corpus(rooms=rooms, meta=meta), 3, seed=0)
    assert len(out) == 8 and torch.equal(out.rooms[:2], rooms)
    assert torch.equal(door_sides(out.rooms), out.doors)  # the tiles and the metadata agree
    assert torch.equal(out.rooms[:, 2:14, 2:9], rooms[:, 2:14, 2:9].repeat(4, 1, 1))
    assert len(augment_doors(Corpus(rooms=rooms, meta=meta), 0, seed=0)) == 2


# ---------------------------------------------------------------- the model


def test_local_attention_mask() -> None:
    assert local_attention_mask((8, 6), 0, 0) is None
    mask = local_attention_mask((8, 6), 2, 1)  # (50, 50)
    assert mask.shape == (50, 50) and mask[0].tolist()[:8] == [True, True, False, False, False, False, True, True]
    assert bool(mask[:, 48:].all()) and bool(mask[48:].all())  # condition tokens see and are seen by all


def test_loss_and_shapes(model: RoomModel) -> None:
    codes = torch.randint(0, 16, (5, 8, 6))
    cond = condition_tokens(None, None, None, n=5, cond_stairs=True, cond_attributes=True)
    torch.manual_seed(0)
    loss, metrics = model.diffusion.loss(codes, cond, drop_prob=0.1)
    assert loss.shape == () and loss.item() > 0 and set(metrics) == {"diffusion_loss", "masked_accuracy"}
    loss.backward()
    assert all(p.grad is not None for p in model.diffusion.denoiser.parameters() if p.requires_grad)


@pytest.mark.parametrize("sampler", ["random", "confidence"])
def test_sampling_is_deterministic_complete_and_batch_size_independent(model: RoomModel, sampler: str) -> None:
    settings = SamplingSettings(
        sample_steps=4, guidance_scale=2.0, sampler=sampler, sample_temperature=1.0, guide_attributes=False
    )  # CodeDiffusion.sample's former defaults
    cond = condition_tokens(None, None, None, n=7, cond_stairs=True, cond_attributes=True)
    codes = model.diffusion.sample(cond, settings, generator=torch.Generator().manual_seed(3), batch_size=7)
    assert codes.shape == (7, 8, 6) and codes.dtype == torch.long
    assert not bool((codes == model.diffusion.mask_id).any())  # no [MASK] left
    rooms = generate(model, 7, doors="north", seed=3, sampler=sampler)
    assert torch.equal(rooms, generate(model, 7, doors="north", seed=3, sampler=sampler))
    assert torch.equal(rooms, generate(model, 7, doors="north", seed=3, sampler=sampler, batch_size=2))
    assert not torch.equal(rooms, generate(model, 7, doors="north", seed=4, sampler=sampler))


def test_requested_mirror_axes_are_exact(model: RoomModel) -> None:
    model.diffusion.set_mirror_maps(*(torch.randint(0, 16, (4, 8, 6)) for _ in range(3)))
    rooms = generate(model, 12, attributes={"mirror_rows": True, "mirror_cols": "open"}, seed=0)
    inner = rooms[:, 2:14, 2:9]
    assert torch.equal(inner, inner.flip(1))  # every room is its own top-bottom mirror
    loose = generate(model, 12, attributes={"mirror_rows": "open"}, seed=0, tie_mirrors=False)
    assert loose.shape == (12, 16, 11)


def test_default_request_is_playable_symmetric_about_one_axis(model: RoomModel) -> None:
    tokens = attribute_tokens(model, 200, None, seed=0)  # (200, 6)
    assert bool((tokens[:, 2:4] == PRESENT).all()) and bool((tokens[:, :2] == UNKNOWN).all())
    axes = tokens[:, 4:]
    assert bool(((axes == PRESENT).sum(1) == 1).all())  # one axis each, the other left open
    assert 60 < int((axes[:, 0] == PRESENT).sum()) < 140
    assert torch.equal(mirror_request(3, "both", 0), torch.full((3, 2), PRESENT))
    not_symmetric = attribute_tokens(model, 5, {"symmetric": False}, seed=0)
    assert bool((not_symmetric[:, 4:] == UNKNOWN).all())  # no mirror axis is asked of an asymmetric room


def test_generate_uses_the_sampling_settings_stored_with_the_model(model: RoomModel) -> None:
    sampler = model.config.run.sampling.sampler
    assert torch.equal(generate(model, 4, seed=1), generate(model, 4, seed=1, steps=4, sampler=sampler))
    assert not torch.equal(generate(model, 4, seed=1), generate(model, 4, seed=1, steps=2))
    with pytest.raises(TypeError, match="unknown sampling setting"):
        generate(model, 4, seed=1, stepz=2)


def test_continuous_model_refuses_attributes() -> None:
    m = RoomModel(ModelConfig(model_kind="continuous", **TINY))
    with pytest.raises(ValueError, match="takes no room attributes"):
        generate(m, 2, attributes={"monsters": True}, steps=2)


def test_a_checkpoint_of_the_previous_model_kind_still_loads() -> None:
    old = load_model(FIXTURE / "model_final.pt")  # written by 0.1.0, before model_kind existed
    assert (old.cfg.model_kind, old.cfg.vq_local, old.cfg.column_pad, old.config.data.door_augment) == (
        "continuous",
        False,
        "zero",
        0,
    )
    assert generate(old, 2, doors="north", steps=2, seed=0).shape == (2, 16, 11)
    assert old.attribute_names == ()


# ---------------------------------------------------------------- the copy guard


def test_copy_guard_redraws_rooms_with_a_training_interior(model: RoomModel) -> None:
    from hmolqd.data.tiles import INTERIOR, nearest_distance
    from hmolqd.sampling.discrete import counting_redraws, use_training_rooms

    first = generate(model, 12, seed=5)
    interiors = use_training_rooms(model, first).interiors  # as if trained on these rooms
    with counting_redraws() as stats:
        guarded = generate(model, 12, seed=5, copy_guard=1)
    left = nearest_distance(guarded[(slice(None), *INTERIOR)].flatten(1), interiors)
    assert stats["redrawn"] >= 12  # every first draw was a copy, so every room was drawn again at least once
    assert stats["redrawn"] <= 12 * (model.config.run.sampling.guard_draws - 1) and stats["kept"] == int(
        (left == 0).sum()
    )
    assert torch.equal(guarded, generate(model, 12, seed=5, copy_guard=1))  # seeded
    with counting_redraws() as stats:
        assert torch.equal(first, generate(model, 12, seed=5, copy_guard=0))
    assert stats == {"redrawn": 0, "kept": 0}
    with counting_redraws() as stats:
        far = generate(model, 12, seed=5, copy_guard=200)  # nothing is ever 200 tiles away: all kept
    assert stats["kept"] == 12 and far.shape == first.shape


@pytest.mark.real_data
def test_guards_read_the_training_rooms_from_the_corpus(vglc_dir: Path) -> None:
    from hmolqd.data.tiles import pattern_codes
    from hmolqd.sampling.discrete import guard_rejects, training_reference

    m = RoomModel.from_config(Config.from_flat({**TINY, "data_dir": str(vglc_dir)}))
    ref = training_reference(m)
    assert tuple(ref.interiors.shape) == (78, 84) and training_reference(m) is ref  # read once per model
    train, _ = split_corpus(load_corpus(vglc_dir), m.config.data.val_dungeons)
    rooms = train.rooms[:20].clone()
    assert torch.isin(pattern_codes(rooms, 2), ref.patterns).all()
    rooms[0, 5, 5] = STAIR  # a stair tile in an open floor: windows no Zelda room has
    rooms[3] = with_doors(rooms[3:4], torch.zeros(1, 4, dtype=torch.bool))[0]  # walled up: never playable
    on = SamplingSettings(pattern_guard=True)
    assert guard_rejects(m, rooms, on).tolist() == [True] + [False] * 19
    copied = guard_rejects(m, rooms, SamplingSettings(copy_guard=1))  # training rooms: copied interiors but the first
    assert copied.tolist() == [False] + [True] * 19
    assert not guard_rejects(m, rooms, SamplingSettings()).any()
    asked = m.diffusion.room_condition(rooms)  # what each room is, so a request guard passes all of them ...
    asked[1, 0] = PRESENT if asked[1, 0] == ABSENT else ABSENT  # ... but the second, asked for other doors
    asked[2, -4] = UNKNOWN  # (an open column never rejects)
    asked[3, -4] = PRESENT  # no doors but playable: a room the rule can never pass is not drawn again
    assert guard_rejects(m, rooms, SamplingSettings(request_guard=True), asked).tolist() == [False, True] + [False] * 18


def test_ask_playable_with_doors_leaves_doorless_rooms_open(model: RoomModel) -> None:
    settings = SamplingSettings(ask_playable="with_doors")
    doors = torch.tensor([[True, False, False, False], [False, False, False, False]])
    col = ATTRIBUTES.index("playable")
    tokens = attribute_tokens(model, 2, None, 0, settings, doors)
    assert tokens[:, col].tolist() == [PRESENT, UNKNOWN]  # a room without doors can never pass the playability rule
    assert attribute_tokens(model, 2, {"playable": True}, 0, settings, doors)[:, col].tolist() == [PRESENT, PRESENT]
    assert attribute_tokens(model, 2, None, 0, SamplingSettings(), doors)[:, col].tolist() == [PRESENT, PRESENT]
    assert attribute_tokens(model, 2, None, 0, settings)[:, col].tolist() == [PRESENT, PRESENT]  # doors open

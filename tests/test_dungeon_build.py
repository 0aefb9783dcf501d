"""hmolqd.dungeon.build and the room sources: batched calls, bounded regeneration, honest failure reports."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from hmolqd.config import ModelConfig
from hmolqd.data.tiles import DOOR, MONSTER, ROOM_H, ROOM_W, SIDES, WALL, door_sides, has_stairs
from hmolqd.dungeon.build import DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.sampler import sample_layout
from hmolqd.dungeon.source import (
    CORPUS_REQUESTS,
    DUNGEON_SAMPLING,
    CorpusRoomSource,
    MarkovRoomSource,
    ModelRoomSource,
    PlainRoomSource,
    RoomSource,
    corpus_requests,
    plain_rooms,
)
from hmolqd.models.room_model import RoomModel

LEFT = SIDES.index("left")


class Recorder:
    """Plain rooms, with the rooms of the first `bad_calls` calls broken by `breaker`; records each call's size."""

    name = "recorder"
    attributes: frozenset[str] = frozenset({"monsters"})

    def __init__(self, breaker, bad_calls: int = 1, every: int = 3) -> None:  # type: ignore[no-untyped-def]
        self.breaker, self.bad_calls, self.every = breaker, bad_calls, every
        self.calls: list[int] = []
        self.seen_attributes: list[set[str]] = []

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        self.calls.append(doors.shape[0])
        self.seen_attributes.append(set(attributes or {}))
        rooms = plain_rooms(doors, stairs)
        if len(self.calls) <= self.bad_calls:
            for i in range(0, rooms.shape[0], self.every):
                self.breaker(rooms[i])
        return rooms


def no_doors(room: torch.Tensor) -> None:
    room[room == DOOR] = WALL


def shift_left_door(room: torch.Tensor) -> None:
    if bool((room[7:9, 1] == DOOR).all()):
        room[7:9, 1] = WALL
        room[3:5, 1] = DOOR


@pytest.fixture
def plans():  # type: ignore[no-untyped-def]
    return [plan(sample_layout(seed, rooms=12)) for seed in range(3)]


def test_all_rooms_of_all_dungeons_in_one_call_then_one_call_per_round(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(no_doors)
    dungeons = build_dungeons(plans, source, DungeonConfig(max_regenerations=4))
    total = sum(len(p.layout.rooms) for p in plans)
    broken = len(range(0, total, 3))
    assert source.calls == [total, broken]  # batched: not one call per room or per dungeon
    assert source.seen_attributes[0] == {"monsters"}  # only the attributes the source offers are passed
    assert sum(int((d.generated == 2).sum()) for d in dungeons) == broken
    assert not all(d.walk_before.walkable for d in dungeons)
    for d in dungeons:
        assert d.walk.walkable and d.walk.doors_agree and d.failures == {}
        s = d.summary()["regeneration"]
        assert s["rooms_regenerated"] == int((d.generated > 1).sum())
        assert s["share_regenerated"] == pytest.approx(s["rooms_regenerated"] / len(d.layout.rooms))


def test_regeneration_is_bounded_and_failures_are_reported(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(no_doors, bad_calls=100, every=1)  # never gets better
    config = DungeonConfig(max_regenerations=2)
    dungeons = build_dungeons(plans, source, config)
    assert len(source.calls) == 1 + config.max_regenerations
    for d in dungeons:
        assert bool((d.generated == 1 + config.max_regenerations).all())
        assert set(d.failures) == {room.id for room in d.layout.rooms}
        assert all(any(r.startswith("doors none, asked ") for r in reasons) for reasons in d.failures.values())
        # their stair is a way in
        stair_rooms = {room.id for k, room in enumerate(d.layout.rooms) if bool(d.plan.stairs[k])}
        assert all("not playable" in reasons for rid, reasons in d.failures.items() if rid not in stair_rooms)
        assert not d.walk.walkable
        assert d.summary()["regeneration"]["rooms_failing"] == len(d.layout.rooms)


def test_every_round_asks_for_the_same_attributes(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(no_doors, bad_calls=100, every=1)
    source.attributes = frozenset({"monsters", "playable"})
    build_dungeons(plans, source, DungeonConfig(max_regenerations=3))
    # the requests follow the corpus (no stair room asked for monsters), so no round drops any of them
    assert source.seen_attributes == [{"monsters", "playable"}] * 4


def test_requests_follow_the_corpus_and_what_the_room_must_connect() -> None:
    p = plan(sample_layout(3, rooms=30))
    stairs, has_door = p.stairs, p.doors.any(1)
    assert stairs.any() and (~stairs).any()
    for name, rule in CORPUS_REQUESTS[True].items():
        assert bool((p.attributes[name][stairs] == rule).all()), name  # e.g. no stair room asked for monsters
    assert not bool(p.attributes["monsters"][stairs].any())
    assert bool(p.attributes["mirror_rows"][~stairs].all()) and not bool(p.attributes["mirror_rows"][stairs].any())
    assert bool(p.attributes["playable"][has_door].all())  # all its doors and its stair in one component
    assert torch.equal(p.asked["water"], stairs)  # water: ruled out of stair rooms, left open elsewhere
    assert "monsters" not in p.asked  # asked of every room: the label, or False for a stair room
    assert plan(sample_layout(3, rooms=30), DungeonConfig(request_attributes=False)).attributes == {}


def test_rooms_asking_for_different_attributes_go_in_one_call_per_group(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(no_doors, bad_calls=0)
    source.attributes = frozenset({"monsters", "water", "playable"})
    dungeons = build_dungeons(plans, source, DungeonConfig(max_regenerations=0))
    stair_rooms = sum(int(p.stairs.sum()) for p in plans)
    total = sum(len(p.layout.rooms) for p in plans)
    assert stair_rooms > 0
    assert sorted(source.calls) == sorted([stair_rooms, total - stair_rooms])  # water asked of stair rooms only
    assert sorted(map(sorted, source.seen_attributes)) == [["monsters", "playable"], ["monsters", "playable", "water"]]
    assert all(d.failures == {} for d in dungeons)


def test_corpus_requests_are_what_the_real_rooms_show(vglc_dir) -> None:  # type: ignore[no-untyped-def]
    from hmolqd.data.vglc import load_corpus

    assert corpus_requests(load_corpus(vglc_dir).rooms) == CORPUS_REQUESTS


def test_corpus_requests_rule_out_what_no_room_of_a_kind_shows() -> None:
    doors = torch.ones(4, 4, dtype=torch.bool)
    rooms = plain_rooms(doors, torch.tensor([True, True, False, False]))
    rooms[2, 4, 4] = MONSTER  # a monster in one room without stairs, none in a stair room
    rules = corpus_requests(rooms)
    assert rules[True]["monsters"] is False and "monsters" not in rules[False]
    assert rules[True]["water"] is False and rules[False]["water"] is False
    with pytest.raises(ValueError, match="none with stairs"):
        corpus_requests(rooms[2:])


def test_a_room_entered_only_by_its_stair_link_needs_no_door() -> None:
    from hmolqd.data.playability import playable_mask
    from hmolqd.data.tiles import STAIR

    room = plain_rooms(torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, dtype=torch.bool))  # no doors, a stair
    assert bool((room == STAIR).any()) and not bool(playable_mask(room)[0])  # the room rule wants a door
    assert bool(playable_mask(room, stairs_as_entry=True)[0])  # the dungeon's check: the stair is its way in
    closed = plain_rooms(torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    assert not bool(playable_mask(closed, stairs_as_entry=True)[0])  # no door and no stair: no way in


def test_a_start_room_whose_door_is_cut_off_from_where_the_player_starts_is_regenerated() -> None:
    from hmolqd.data.tiles import ELEMENT, FLOOR
    from hmolqd.dungeon.build import room_failures

    p = plan(sample_layout(0, rooms=8))
    rooms = plain_rooms(p.doors, p.stairs)
    start = next(k for k, room in enumerate(p.layout.rooms) if room.id == p.layout.start)
    assert room_failures([p], rooms) == [()] * len(rooms)
    room = rooms[start]
    side = int(p.doors[start].nonzero()[0])
    # one band door tile walled in by water, and a D tile inside the room, where the player then starts
    # (as a trained model once drew it): the room rule passes, the player cannot leave
    room[room == DOOR] = WALL
    tile = {0: (1, 5), 1: (14, 5), 2: (8, 1), 3: (8, 9)}[side]
    room[tile] = DOOR
    room[2:14, 2:9] = ELEMENT
    room[6, 5] = DOOR
    room[5, 5] = FLOOR  # a floor tile beside it
    reasons = room_failures([p], rooms)
    assert "start room: where the player starts is cut off from its doors" in reasons[start]
    assert all(r == () for k, r in enumerate(reasons) if k != start)


def test_no_regeneration_when_bound_is_zero(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(no_doors)
    dungeons = build_dungeons(plans, source, DungeonConfig(max_regenerations=0))
    assert len(source.calls) == 1
    assert sum(len(d.failures) for d in dungeons) > 0


def test_doors_that_do_not_line_up_are_regenerated(plans) -> None:  # type: ignore[no-untyped-def]
    source = Recorder(shift_left_door, every=1)
    dungeons = build_dungeons(plans, source)
    regenerated = sum(int((d.generated > 1).sum()) for d in dungeons)
    assert regenerated > 0 and len(source.calls) == 2
    # The shifted rooms are still playable with the right door sides: only the pair check catches them.
    assert any(d.walk_before.misaligned for d in dungeons)
    assert all(d.walk.walkable and not d.walk.misaligned and d.failures == {} for d in dungeons)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="DungeonConfig.max_regenerations must be an int >= 0"):
        DungeonConfig(max_regenerations=-1)
    with pytest.raises(ValueError, match="DungeonConfig.embed_attempts must be an int >= 1"):
        DungeonConfig(embed_attempts=0)


def request(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    doors = torch.rand(n, 4, generator=gen) < 0.5
    doors[:, 0] |= ~doors.any(1)  # at least one door each
    return doors, torch.arange(n) % 2 == 0


@pytest.fixture(scope="module")
def training_rooms() -> torch.Tensor:
    """Plain rooms with every door combination and both stair states: enough for the Markov chain."""
    combos = torch.tensor([[bool(k >> s & 1) for s in range(4)] for k in range(1, 16)])
    return torch.cat(
        [plain_rooms(combos, torch.zeros(15, dtype=torch.bool)), plain_rooms(combos, torch.ones(15, dtype=torch.bool))]
    )


def tiny_model() -> RoomModel:
    model = RoomModel(
        ModelConfig(
            num_embeddings=16, latent_dim=4, embedding_dim=16, denoiser_dim=32, denoiser_depth=1, num_timesteps=50
        )
    )
    return model.eval()


@pytest.mark.parametrize("kind", ["markov", "corpus", "plain", "model"])
def test_sources_follow_the_protocol_and_are_seeded(kind: str, training_rooms: torch.Tensor) -> None:
    source: RoomSource = {
        "markov": lambda: MarkovRoomSource(training_rooms),
        "corpus": lambda: CorpusRoomSource(training_rooms),
        "plain": PlainRoomSource,
        "model": lambda: ModelRoomSource(tiny_model(), steps=3),
    }[kind]()
    assert isinstance(source, RoomSource)
    doors, stairs = request()
    a = source.rooms(doors, stairs, None, seed=1)
    assert a.dtype == torch.uint8 and tuple(a.shape) == (6, ROOM_H, ROOM_W)
    assert torch.equal(a, source.rooms(doors, stairs, None, seed=1))
    if kind != "model":  # the untrained model follows no request
        assert torch.equal(door_sides(a), doors) and torch.equal(has_stairs(a), stairs)


def test_request_is_checked() -> None:
    with pytest.raises(ValueError, match=r"doors must be \(n, 4\) bool"):
        PlainRoomSource().rooms(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, dtype=torch.bool), None, 0)
    with pytest.raises(ValueError, match="unknown attribute 'lava'"):
        PlainRoomSource().rooms(
            torch.zeros(2, 4, dtype=torch.bool),
            torch.zeros(2, dtype=torch.bool),
            {"lava": torch.zeros(2, dtype=torch.bool)},
            0,
        )


def test_model_source_follows_the_run_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling settings not given are DUNGEON_SAMPLING, then the model's own (generate resolves them); given ones
    win; stairs only where taken; the model's attributes are passed on, others dropped."""
    import dataclasses
    from types import SimpleNamespace

    import hmolqd.sampling.generate as sampling
    from hmolqd.config import Config

    calls: list[dict] = []

    def fake_generate(
        model, n, doors=None, stairs=None, attributes=None, *, seed=0, batch_size=256, use_ema=True, **kw
    ):  # type: ignore[no-untyped-def]
        calls.append({"stairs": stairs, "seed": seed, "attributes": sorted(attributes or {}), **kw})
        return plain_rooms(doors, torch.zeros(n, dtype=torch.bool))

    monkeypatch.setattr(sampling, "generate", fake_generate)
    sampling_settings = dataclasses.replace(Config().run.sampling, sample_steps=12, sampler="random")
    run = dataclasses.replace(Config().run, sampling=sampling_settings)
    model = SimpleNamespace(
        config=SimpleNamespace(run=run),
        cfg=SimpleNamespace(cond_stairs=False, model_kind="discrete"),
        attribute_names=("monsters", "water", "playable", "symmetric", "mirror_rows", "mirror_cols"),
        parameters=lambda: iter([torch.zeros(1)]),  # a CPU model (sampling_settings resolves sample_dtype by device)
    )
    doors, stairs = request()
    monsters = {"monsters": torch.ones(len(doors), dtype=torch.bool)}
    ModelRoomSource(model).rooms(doors, stairs, monsters, seed=5)
    ModelRoomSource(model, steps=4, sampler="confidence").rooms(doors, stairs, None, seed=6)
    assert calls == [
        {"stairs": None, "seed": 5, "attributes": ["monsters"], **DUNGEON_SAMPLING},
        {"stairs": None, "seed": 6, "attributes": [], **DUNGEON_SAMPLING, "steps": 4, "sampler": "confidence"},
    ]
    guidance = DUNGEON_SAMPLING["guidance_scale"]
    assert ModelRoomSource(model).name == f"model (discrete, 12 sampling steps, guidance {guidance})"
    assert "guidance 3.0" in ModelRoomSource(model, guidance=3.0).name
    with pytest.raises(TypeError, match="unknown sampling setting"):
        ModelRoomSource(model, stepz=3)

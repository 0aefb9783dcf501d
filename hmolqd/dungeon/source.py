"""Where the rooms of a dungeon come from: the `RoomSource` protocol and three sources.

A source answers one batched request: `(n, 4)` door sides (SIDES order), `(n,)` stairs, optional room
attributes (name -> `(n,)` bool; `ATTRIBUTES` lists the names the dungeon asks for) and a seed, with
`(n, 16, 11)` uint8 rooms. It conditions on the attributes it lists in `attributes` and ignores the rest.
It must be deterministic for a seed. The dungeon code depends on this protocol only, so any room model
can be plugged in:

- `ModelRoomSource`: a trained room model through `hmolqd.sampling.generate` (sampling keys default to
  the model's own run config);
- `MarkovRoomSource`: the door-conditioned Markov chain of `hmolqd.evaluation.baselines`, fitted on rooms
  (for tests and development without a trained model);
- `CorpusRoomSource`: real rooms drawn from a corpus with the requested doors and stairs (a reference:
  the dungeon pipeline with real rooms);
- `PlainRoomSource`: empty rooms built by rule with exactly the requested doors and stairs (tests, and
  timing the pipeline without a model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from hmolqd.data.attributes import ATTRIBUTES as ALL_ATTRIBUTES
from hmolqd.data.attributes import has_monsters, has_water
from hmolqd.data.attributes import room_attributes as room_attribute_table
from hmolqd.data.dataset import with_doors
from hmolqd.data.playability import check_rooms
from hmolqd.data.tiles import (
    FLOOR,
    INTERIOR,
    ROOM_H,
    ROOM_W,
    SIDES,
    STAIR,
    WALL,
    door_sides,
    has_stairs,
)

# Room attributes a dungeon may ask for: monsters (rooms whose node carries e, m or b), water (element
# tiles P/O/I), playable (the playability rule), symmetric and its two mirror axes (`hmolqd.data.attributes`).
ATTRIBUTES: tuple[str, ...] = ("monsters", "water", "playable", "symmetric", "mirror_rows", "mirror_cols")
# The attributes `corpus_requests` rules on, with the rule each follows there.
NEVER_SHOWN: tuple[str, ...] = ("monsters", "water")  # asked False of a kind of room no real one shows them in
MOST_SHOWN: tuple[str, ...] = ("symmetric", "mirror_rows", "mirror_cols")  # asked as most real rooms of a kind are
# What `corpus_requests` finds in the 459 VGLC rooms (39 with stairs; tests/test_dungeon_build.py recomputes it
# from the corpus): by has-stairs, the attribute values a room is asked for. No real stair room shows monsters,
# water or a top <-> bottom mirror (0 of 39); 33 of 39 mirror left <-> right; rooms without stairs are mostly
# mirrored about both axes (84.5 % rows, 77.4 % cols).
CORPUS_REQUESTS: dict[bool, dict[str, bool]] = {
    True: {"monsters": False, "water": False, "symmetric": True, "mirror_rows": False, "mirror_cols": True},
    False: {"symmetric": True, "mirror_rows": True, "mirror_cols": True},
}
# Sampling settings a dungeon asks of a room model unless told otherwise (bench/SOLVABLE.md): classifier-free
# guidance over the whole condition (doors and stairs too, not only the attributes) at scale 2, at the temperature
# and without the pattern guard those dungeons were measured with (the room defaults of bench/QUALITY.md, 1.4 and
# the guard, have not been measured on whole dungeons).
DUNGEON_SAMPLING: dict[str, Any] = {
    "guide_attributes": False,
    "guidance_scale": 2.0,
    "sample_temperature": 1.1,
    "pattern_guard": False,
}
STAIR_TILE: tuple[int, int] = (ROOM_H // 2, ROOM_W // 2)  # where plain rooms put their stair


@runtime_checkable
class RoomSource(Protocol):
    name: str
    attributes: frozenset[str]  # the names of ATTRIBUTES this source conditions on

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        """`(n, 4)` bool doors, `(n,)` bool stairs, {name: `(n,)` bool} -> `(n, 16, 11)` uint8 rooms."""
        ...


def check_request(doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None) -> int:
    """Validate one request; returns n."""
    if doors.dtype != torch.bool or doors.dim() != 2 or doors.shape[1] != len(SIDES):
        raise ValueError(
            f"room request: doors must be (n, {len(SIDES)}) bool (sides {SIDES}), "
            f"got {doors.dtype} {tuple(doors.shape)}"
        )
    n = doors.shape[0]
    if stairs.dtype != torch.bool or tuple(stairs.shape) != (n,):
        raise ValueError(f"room request: stairs must be ({n},) bool, got {stairs.dtype} {tuple(stairs.shape)}")
    for name, value in (attributes or {}).items():
        if name not in ATTRIBUTES:
            raise ValueError(f"room request: unknown attribute {name!r}; known: {ATTRIBUTES}")
        if value.dtype != torch.bool or tuple(value.shape) != (n,):
            raise ValueError(
                f"room request: attribute {name!r} must be ({n},) bool, got {value.dtype} {tuple(value.shape)}"
            )
    return n


def corpus_requests(rooms: torch.Tensor) -> dict[bool, dict[str, bool]]:
    """What to ask a room for, learnt from real rooms `(N, 16, 11)`, by has-stairs: for each of NEVER_SHOWN
    that no room of that kind shows, False; for each of MOST_SHOWN, the value most rooms of that kind show.
    A request thus never asks for a combination the corpus lacks (e.g. a stair room with monsters)."""
    rooms = check_rooms(rooms, "corpus rooms")
    shown = dict(zip(ALL_ATTRIBUTES, room_attribute_table(rooms).T, strict=True))  # name -> (N,) bool
    stairs = has_stairs(rooms)
    out: dict[bool, dict[str, bool]] = {}
    for kind in (True, False):
        mine = stairs == kind
        if not mine.any():
            raise ValueError(f"corpus rooms: none {'with' if kind else 'without'} stairs to learn requests from")
        rules = {name: False for name in NEVER_SHOWN if not shown[name][mine].any()}
        rules.update({name: bool(shown[name][mine].float().mean() > 0.5) for name in MOST_SHOWN})
        out[kind] = {name: rules[name] for name in ATTRIBUTES if name in rules}
    return out


def room_attributes(rooms: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attributes the tiles show: monsters (an M tile), water (an element tile P/O/I); `(n,)` bool each."""
    rooms = check_rooms(rooms)
    return {"monsters": has_monsters(rooms), "water": has_water(rooms)}


class ModelRoomSource:
    """A trained room model (`hmolqd.models.room_model.RoomModel`) as a room source.

    Sampling settings not given here are DUNGEON_SAMPLING, then the model's own (its run config, resolved by
    `generate`); those given (`generate`'s sampling keywords: steps, guidance, sampler, ...) win. Stairs are
    asked only of a model that takes them (`cond_stairs`); attributes only where the model lists them in
    `attribute_names`.
    """

    def __init__(self, model: Any, *, batch_size: int = 256, **sampling: Any) -> None:
        from hmolqd.sampling.generate import generate, sampling_settings

        self.model, self._generate, self.batch_size = model, generate, batch_size
        self.sampling = {**DUNGEON_SAMPLING, **{k: v for k, v in sampling.items() if v is not None}}
        settings = sampling_settings(model, **self.sampling)  # an unknown keyword is an error here
        self.settings = settings  # what the rooms are sampled with, resolved (an illumination records it)
        self.cond_stairs = bool(model.cfg.cond_stairs)
        self.name = (
            f"model ({model.cfg.model_kind}, {settings.sample_steps} sampling steps, "
            f"guidance {settings.guidance_scale})"
        )
        self.attributes = frozenset(model.attribute_names) & frozenset(ATTRIBUTES)

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        n = check_request(doors, stairs, attributes)
        asked = {k: v for k, v in (attributes or {}).items() if k in self.attributes}
        return self._generate(
            self.model,
            n,
            doors=doors,
            stairs=stairs if self.cond_stairs else None,
            attributes=asked or None,
            seed=seed,
            batch_size=self.batch_size,
            **self.sampling,
        )


class MarkovRoomSource:
    """The Markov-chain baseline as a room source: its band (walls and doors) is copied from a training room
    with the requested door sides; it has no stairs condition, so stairs are set afterwards: every S tile of
    a room that asks for none becomes floor, and a room that asks for stairs gets one S on a random interior
    floor tile (a floor tile of the interior is always there in practice; if not, the room has no stairs)."""

    attributes: frozenset[str] = frozenset()

    def __init__(self, train_rooms: torch.Tensor) -> None:
        from hmolqd.evaluation.baselines import MarkovRoomGenerator

        self.chain = MarkovRoomGenerator().fit(train_rooms)
        self.name = f"Markov chain fitted on {train_rooms.shape[0]} rooms"

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        n = check_request(doors, stairs, attributes)
        rooms = self.chain.sample(n, doors, seed=seed).long()  # (n, 16, 11)
        gen = torch.Generator().manual_seed(seed + 1)
        rooms[(rooms == STAIR) & ~stairs.view(n, 1, 1)] = FLOOR
        inner = torch.zeros(ROOM_H, ROOM_W, dtype=torch.bool)
        inner[INTERIOR] = True
        for i in (stairs & ~has_stairs(rooms)).nonzero().flatten().tolist():
            spots = ((rooms[i] == FLOOR) & inner).flatten().nonzero().flatten()
            if spots.numel():
                rooms[i].view(-1)[spots[torch.randint(spots.numel(), (1,), generator=gen)]] = STAIR
        return rooms.to(torch.uint8)


class CorpusRoomSource:
    """Real rooms: each request draws uniformly among corpus rooms with exactly its door sides and stairs
    (and the attributes `monsters` / `water` where asked and such rooms exist); a request no corpus room
    meets falls back to rooms with the right doors only, then to any room (that room fails its checks)."""

    attributes: frozenset[str] = frozenset({"monsters", "water"})

    def __init__(self, rooms: torch.Tensor) -> None:
        self.pool = check_rooms(rooms, "corpus rooms").to(torch.uint8)
        self.doors = door_sides(self.pool)  # (M, 4)
        self.stairs = has_stairs(self.pool)  # (M,)
        self.tags = room_attributes(self.pool)
        self.name = f"corpus ({self.pool.shape[0]} rooms)"

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        n = check_request(doors, stairs, attributes)
        gen = torch.Generator().manual_seed(seed)
        asked = {k: v for k, v in (attributes or {}).items() if k in self.attributes}
        out = torch.empty(n, ROOM_H, ROOM_W, dtype=torch.uint8)
        for i in range(n):
            exact = (self.doors == doors[i]).all(1) & (self.stairs == stairs[i])
            tagged = exact.clone()
            for name, value in asked.items():
                tagged &= self.tags[name] == value[i]
            for mask in (tagged, exact, (self.doors == doors[i]).all(1), torch.ones_like(exact)):
                if mask.any():
                    choice = mask.nonzero().flatten()
                    out[i] = self.pool[choice[torch.randint(choice.numel(), (1,), generator=gen)]]
                    break
        return out


def plain_rooms(doors: torch.Tensor, stairs: torch.Tensor) -> torch.Tensor:
    """`(n, 4)` doors, `(n,)` stairs -> `(n, 16, 11)` uint8 rooms: wall band, floor inside, doors at
    `tiles.DOOR_TILES` (`with_doors`), a stair at `STAIR_TILE` where asked. Every such room with a door is playable."""
    n = check_request(doors, stairs, None)
    rooms = torch.full((n, ROOM_H, ROOM_W), WALL, dtype=torch.uint8)
    rooms[(slice(None), *INTERIOR)] = FLOOR
    rooms = with_doors(rooms, doors)
    rooms[stairs, STAIR_TILE[0], STAIR_TILE[1]] = STAIR
    return rooms


class PlainRoomSource:
    """`plain_rooms` as a room source (the seed is not used: the rooms follow from the request)."""

    name = "plain rooms"
    attributes: frozenset[str] = frozenset()

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        check_request(doors, stairs, attributes)
        return plain_rooms(doors, stairs)

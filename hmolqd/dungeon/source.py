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

import inspect
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from hmolqd.data.playability import BAND_WIDTH, check_rooms
from hmolqd.data.tiles import (
    DOOR,
    ELEMENT,
    ELEMENT_BLOCK,
    ELEMENT_FLOOR,
    FLOOR,
    MONSTER,
    ROOM_H,
    ROOM_W,
    SIDES,
    STAIR,
    WALL,
    door_sides,
    has_stairs,
)

# Room attributes a dungeon may ask for: monsters (rooms whose node carries e, m or b), water (element
# tiles P/O/I), playable (the playability rule) and symmetric (as `hmolqd.evaluation.metrics`).
ATTRIBUTES: tuple[str, ...] = ("monsters", "water", "playable", "symmetric")
# Door tiles of each side (rows, cols of the text grid) where every real room has them: the inner band
# row or column, centred (top: row 1, columns 4-6; left: rows 7-8, column 1; ...), SIDES order.
DOOR_TILES: tuple[tuple[slice | int, slice | int], ...] = (
    (1, slice(4, 7)), (ROOM_H - 2, slice(4, 7)), (slice(7, 9), 1), (slice(7, 9), ROOM_W - 2),
)
STAIR_TILE: tuple[int, int] = (ROOM_H // 2, ROOM_W // 2)  # where plain rooms put their stair


@runtime_checkable
class RoomSource(Protocol):
    name: str
    attributes: frozenset[str]  # the names of ATTRIBUTES this source conditions on

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int) -> torch.Tensor:
        """`(n, 4)` bool doors, `(n,)` bool stairs, {name: `(n,)` bool} -> `(n, 16, 11)` uint8 rooms."""
        ...


def check_request(doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None) -> int:
    """Validate one request; returns n."""
    if doors.dtype != torch.bool or doors.dim() != 2 or doors.shape[1] != len(SIDES):
        raise ValueError(f"room request: doors must be (n, {len(SIDES)}) bool (sides {SIDES}), got {doors.dtype} {tuple(doors.shape)}")
    n = doors.shape[0]
    if stairs.dtype != torch.bool or tuple(stairs.shape) != (n,):
        raise ValueError(f"room request: stairs must be ({n},) bool, got {stairs.dtype} {tuple(stairs.shape)}")
    for name, value in (attributes or {}).items():
        if name not in ATTRIBUTES:
            raise ValueError(f"room request: unknown attribute {name!r}; known: {ATTRIBUTES}")
        if value.dtype != torch.bool or tuple(value.shape) != (n,):
            raise ValueError(f"room request: attribute {name!r} must be ({n},) bool, got {value.dtype} {tuple(value.shape)}")
    return n


def room_attributes(rooms: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attributes the tiles show: monsters (an M tile), water (an element tile P/O/I); `(n,)` bool each."""
    rooms = check_rooms(rooms)
    flat = rooms.flatten(1)
    water = (flat == ELEMENT) | (flat == ELEMENT_FLOOR) | (flat == ELEMENT_BLOCK)
    return {"monsters": (flat == MONSTER).any(1), "water": water.any(1)}


class ModelRoomSource:
    """A trained room model (`hmolqd.models.room_model.RoomModel`) as a room source.

    `steps`, `guidance`, `eta` and `door_guidance` default to the model's run config (the sampling keys
    it was trained with), and so does any other keyword of `generate` that the run config holds under the
    same name (a sampler's keys); `options` go to `generate` as they are and win. Stairs are asked only of
    a model that takes them (`cond_stairs`). Attributes are passed on only to a `generate` that takes them
    and a model that lists them in `attribute_names`.
    """

    _SET_HERE = frozenset({"model", "n", "doors", "stairs", "steps", "guidance", "eta", "seed", "batch_size", "door_guidance", "attributes"})

    def __init__(self, model: Any, *, steps: int | None = None, guidance: float | None = None, eta: float | None = None,
                 door_guidance: float | None = None, batch_size: int = 256, **options: Any) -> None:
        from hmolqd.sampling.generate import generate

        run = model.config.run
        self.model = model
        self._generate = generate
        self.steps = run.sample_steps if steps is None else steps
        self.guidance = run.guidance_scale if guidance is None else guidance
        self.eta = run.ddim_eta if eta is None else eta
        self.door_guidance = run.door_guidance if door_guidance is None else door_guidance
        self.batch_size = batch_size
        params = inspect.signature(generate).parameters
        from_run = {k: getattr(run, k) for k in params if k not in self._SET_HERE and hasattr(run, k)}
        self.options = {**from_run, **options}
        self.cond_stairs = bool(getattr(model.cfg, "cond_stairs", True))
        self.name = f"model ({self.steps} sampling steps, guidance {self.guidance}, door guidance {self.door_guidance})"
        takes = "attributes" in params
        self.attributes = frozenset(getattr(model, "attribute_names", ())) & frozenset(ATTRIBUTES) if takes else frozenset()

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int) -> torch.Tensor:
        n = check_request(doors, stairs, attributes)
        extra: dict[str, Any] = dict(self.options)
        asked = {k: v for k, v in (attributes or {}).items() if k in self.attributes}
        if asked:
            extra["attributes"] = asked
        return self._generate(
            self.model, n, doors=doors, stairs=stairs if self.cond_stairs else None, steps=self.steps, guidance=self.guidance, eta=self.eta, seed=seed,
            batch_size=self.batch_size, door_guidance=self.door_guidance, **extra,
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

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int) -> torch.Tensor:
        n = check_request(doors, stairs, attributes)
        rooms = self.chain.sample(n, doors, seed=seed).long()  # (n, 16, 11)
        gen = torch.Generator().manual_seed(seed + 1)
        rooms[(rooms == STAIR) & ~stairs.view(n, 1, 1)] = FLOOR
        inner = torch.zeros(ROOM_H, ROOM_W, dtype=torch.bool)
        inner[BAND_WIDTH : ROOM_H - BAND_WIDTH, BAND_WIDTH : ROOM_W - BAND_WIDTH] = True
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

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int) -> torch.Tensor:
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
    `DOOR_TILES`, a stair at `STAIR_TILE` where asked. Every such room with a door is playable."""
    n = check_request(doors, stairs, None)
    rooms = torch.full((n, ROOM_H, ROOM_W), WALL, dtype=torch.uint8)
    rooms[:, BAND_WIDTH : ROOM_H - BAND_WIDTH, BAND_WIDTH : ROOM_W - BAND_WIDTH] = FLOOR
    for side, (rows, cols) in enumerate(DOOR_TILES):
        rooms[doors[:, side], rows, cols] = DOOR
    rooms[stairs, STAIR_TILE[0], STAIR_TILE[1]] = STAIR
    return rooms


class PlainRoomSource:
    """`plain_rooms` as a room source (the seed is not used: the rooms follow from the request)."""

    name = "plain rooms"
    attributes: frozenset[str] = frozenset()

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int) -> torch.Tensor:
        check_request(doors, stairs, attributes)
        return plain_rooms(doors, stairs)

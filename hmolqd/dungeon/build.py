"""From layouts to finished dungeons: embed, ask the room source for every room in batched calls, regenerate
the rooms that fail their checks a bounded number of times, then walk each dungeon, check its mission and play
it with the whole-dungeon player (`hmolqd.dungeon.play`), on the first rooms (before regeneration) and on the
final ones.

A room passes its checks when (1) it is playable (`hmolqd.data.playability`; a room whose only way in is
its stair link needs no door) and, in the start room, the player's first tile reaches its doors, (2) its door
sides are exactly the ones its grid neighbours require, (3) it has stairs exactly when it has a stair link, and
(4) each of its doors lines up with the facing door of the neighbouring room (`hmolqd.dungeon.walk`).
All rooms of all dungeons go to the source in one call (one per group of rooms that ask for the same set of
attributes); then, for up to `max_regenerations` rounds, the rooms still failing (of every dungeon at once) go
in one more call each round. A room is thus generated at most `1 + max_regenerations` times. Rooms that still
fail are kept and reported.

What a room asks for (`plan`): its door sides and stairs from the embedding; playable (all its doors and its
stair in one walkable component) where it has a door - no real room without a door counts as playable, its
only way in is a stair; monsters where its node carries e, m or b; and what real rooms of its kind (with or
without stairs) show, `source.CORPUS_REQUESTS`: a stair room is never asked for monsters or water (no real
stair room has them; a model asked for both drops the stairs) and is mirrored left <-> right only, other rooms
about both axes. Water is left open (to the source) where the corpus does not rule it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hmolqd.data.playability import band_mask, playable_mask, walkable_components
from hmolqd.data.tiles import DOOR, ROOM_H, ROOM_W, SCREEN_SIDE, SIDES, STAIR, door_sides, has_stairs, screen_sides
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.embed import OPPOSITE, SIDE_OFFSETS, Embedding, embed
from hmolqd.dungeon.layout import Layout
from hmolqd.dungeon.mission import MissionResult, check_mission
from hmolqd.dungeon.play import PlayResult, play_dungeon
from hmolqd.dungeon.source import CORPUS_REQUESTS, RoomSource, room_attributes
from hmolqd.dungeon.walk import WalkResult, door_positions, start_label, tile_passages, walk_dungeon
from hmolqd.dungeon.workers import IN_PROCESS, Workers

# Node labels of rooms with enemies (plain strings, as in `Room.labels`).
MONSTER_LABELS = frozenset(label.value for label in (RoomLabel.ENEMIES, RoomLabel.MINIBOSS, RoomLabel.BOSS))
_ROUND_SEED = 1_000_003  # seed of regeneration round r: seed + r * _ROUND_SEED
_GROUP_SEED = 7_919  # seed of the k-th group of rooms asking the same attributes in one round: + k * _GROUP_SEED


@dataclass(frozen=True)
class DungeonConfig:
    """How dungeons are built (defaults are the ones the bench measures)."""

    # rounds of regenerating failing rooms; 0 = keep the first rooms (12: stair rooms, see bench/DUNGEON.md)
    max_regenerations: int = 12
    max_stair_links: int = 2  # stair links one room may hold
    embed_attempts: int = 64  # greedy placements tried per graph (the best one is kept)
    mission_max_states: int = 200_000  # bound of the key-order search
    request_attributes: bool = True  # ask the source for room attributes (module docstring), not doors/stairs only

    def __post_init__(self) -> None:
        for name in ("max_regenerations", "max_stair_links", "embed_attempts", "mission_max_states"):
            value = getattr(self, name)
            low = 0 if name in ("max_regenerations", "max_stair_links") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"DungeonConfig.{name} must be an int >= {low}, got {value!r}")


DEFAULT_CONFIG = DungeonConfig()  # the default of every `config=` of the dungeon pipeline (one frozen instance)


@dataclass(frozen=True, eq=False)
class Plan:
    """A layout on the grid and what each of its rooms asks for (in `layout.rooms` order)."""

    layout: Layout
    embedding: Embedding
    doors: torch.Tensor  # (n, 4) bool
    stairs: torch.Tensor  # (n,) bool
    attributes: dict[str, torch.Tensor]  # name -> (n,) bool
    # name -> (n,) bool: the rooms that ask for that attribute (the others leave it open); absent: all rooms
    asked: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Dungeon:
    plan: Plan
    rooms: torch.Tensor  # (n, 16, 11) uint8, layout.rooms order
    generated: torch.Tensor  # (n,) int64: times each room was generated (1 = first try passed)
    failures: dict[int, tuple[str, ...]]  # room id -> reasons, for rooms still failing
    walk_before: WalkResult  # the first rooms, before any regeneration
    walk: WalkResult
    mission: MissionResult
    source: str = ""  # name of the room source
    play: PlayResult | None = None  # the whole-dungeon player on the final rooms (`hmolqd.dungeon.play`)
    play_before: PlayResult | None = None  # the player on the first rooms, before any regeneration

    @property
    def layout(self) -> Layout:
        return self.plan.layout

    @property
    def embedding(self) -> Embedding:
        return self.plan.embedding

    def summary(self) -> dict[str, Any]:
        """Plain-JSON summary: rooms, regeneration counts, mission check, walkability."""
        layout, emb = self.layout, self.embedding
        n = len(layout.rooms)
        shown = room_attributes(self.rooms)
        asked_monsters = self.plan.attributes.get("monsters")
        return {
            "name": layout.name,
            "source": layout.source,
            "room_source": self.source,
            "rooms": n,
            "grid": list(emb.shape),
            "start": layout.start,
            "goal": layout.goal,
            "boss": layout.boss,
            "door_links": len(emb.door_links),
            "stair_links": len(emb.stair_links),
            "locked_doors": sum(1 for link in layout.links if link.locked),
            "regeneration": {
                "rooms_regenerated": int((self.generated > 1).sum()),
                "share_regenerated": float((self.generated > 1).float().mean()) if n else 0.0,
                "extra_generations": int((self.generated - 1).sum()),
                "rooms_failing": len(self.failures),
                "failing": {str(k): list(v) for k, v in sorted(self.failures.items())},
            },
            "playable": int(playable_mask(self.rooms).sum()),
            "monsters_where_asked": None
            if asked_monsters is None or not asked_monsters.any()
            else float(shown["monsters"][asked_monsters].float().mean()),
            "walk_before_regeneration": self.walk_before.to_json(),
            "walk": self.walk.to_json(),
            "mission": self.mission.to_json(),
            "play": None if self.play is None else {k: v for k, v in self.play.to_json().items() if k != "tiles"},
            "beaten_before_regeneration": None if self.play_before is None else self.play_before.beaten,
            "notes": list(layout.notes),
        }


def plan(layout: Layout, config: DungeonConfig = DEFAULT_CONFIG, seed: int = 0) -> Plan:
    """Embed `layout` and derive each room's request (module docstring): doors from grid neighbours, stairs from
    stair links, playable where a door is, monsters from the e/m/b labels, the rest from CORPUS_REQUESTS."""
    emb = embed(layout, seed=seed, attempts=config.embed_attempts, max_stair_links=config.max_stair_links)
    doors = torch.tensor([emb.doors[room.id] for room in layout.rooms], dtype=torch.bool).view(-1, len(SIDES))
    stairs = torch.tensor([emb.stairs[room.id] for room in layout.rooms], dtype=torch.bool)
    if not config.request_attributes:
        return Plan(layout, emb, doors, stairs, {})
    wanted = {
        "monsters": torch.tensor([bool(room.labels & MONSTER_LABELS) for room in layout.rooms], dtype=torch.bool),
        "playable": torch.ones(len(layout.rooms), dtype=torch.bool),
    }
    attributes, asked = {}, {"playable": doors.any(1)}
    for name in sorted({*wanted, *CORPUS_REQUESTS[True], *CORPUS_REQUESTS[False]}):
        ruled = {kind: CORPUS_REQUESTS[kind].get(name) for kind in (True, False)}  # None: the corpus does not rule
        value = wanted.get(name, torch.zeros(len(layout.rooms), dtype=torch.bool)).clone()
        mask = torch.full_like(stairs, name in wanted)
        for kind, rule in ruled.items():
            if rule is not None:
                value[stairs == kind] = rule
                mask[stairs == kind] = True
        attributes[name] = value
        if name in asked:
            mask &= asked[name]
        if not mask.all():
            asked[name] = mask
    return Plan(layout, emb, doors, stairs, attributes, asked)


def room_failures(plans: Sequence[Plan], rooms: torch.Tensor) -> list[tuple[str, ...]]:
    """Reasons each room of the concatenated dungeons `rooms` `(N, 16, 11)` fails its checks (module docstring)."""
    doors = torch.cat([p.doors for p in plans])
    stairs = torch.cat([p.stairs for p in plans])
    playable = playable_mask(rooms, stairs_as_entry=True)  # a room reached only by its stair link has no door
    got_doors = door_sides(rooms)
    got_stairs = has_stairs(rooms)
    positions = door_positions(rooms.long())
    reasons: list[list[str]] = [[] for _ in range(rooms.shape[0])]
    for i in (~playable).nonzero().flatten().tolist():
        reasons[i].append("not playable")
    for i in (got_doors != doors).any(1).nonzero().flatten().tolist():
        got, want = screen_sides(got_doors[i].tolist()), screen_sides(doors[i].tolist())  # sides as on screen
        reasons[i].append(f"doors {got}, asked {want}")
    for i in (got_stairs != stairs).nonzero().flatten().tolist():
        reasons[i].append("no stairs, asked for stairs" if stairs[i] else "stairs, asked for none")
    base = 0
    for p in plans:
        at_slot = {p.embedding.slots[room.id]: base + k for k, room in enumerate(p.layout.rooms)}
        for (r, c), i in at_slot.items():
            for side in (1, 3):
                j = at_slot.get((r + SIDE_OFFSETS[side][0], c + SIDE_OFFSETS[side][1]))
                opp = OPPOSITE[side]
                if j is None or not (got_doors[i, side] and got_doors[j, opp]):
                    continue
                if not (positions[side][i] & positions[opp][j]).any():
                    reasons[i].append(f"{SCREEN_SIDE[SIDES[side]]} door does not line up with its neighbour's")
                    reasons[j].append(f"{SCREEN_SIDE[SIDES[opp]]} door does not line up with its neighbour's")
        k = base + next(k for k, room in enumerate(p.layout.rooms) if room.id == p.layout.start)
        if playable[k] and not _start_reaches_doors(rooms[k]):
            reasons[k].append("start room: where the player starts is cut off from its doors")
        base += len(p.layout.rooms)
    return [tuple(r) for r in reasons]


def _start_reaches_doors(room: torch.Tensor) -> bool:
    """`(16, 11)`: the component the player starts in (`walk.start_label`, which also counts D tiles inside the
    room) holds every band door and stair. A playable room with one door tile passes the room rule even when
    that tile is cut off; only the start room, where the player does not come in by a door, needs more."""
    room = room.long()
    labels = walkable_components(room[None])[0]  # (16, 11)
    targets = ((room == DOOR) & band_mask()) | (room == STAIR)
    return bool((labels[targets] == start_label(room, labels)).all())


def _generate(plans: Sequence[Plan], index: torch.Tensor, source: RoomSource, seed: int) -> torch.Tensor:
    """Source calls for the rooms `index` of the concatenated plans -> `(len(index), 16, 11)` uint8: one call per
    group of rooms that ask for the same attributes (`Plan.asked`), groups in a fixed order."""
    doors = torch.cat([p.doors for p in plans])[index]
    stairs = torch.cat([p.stairs for p in plans])[index]
    names = sorted(set.intersection(*(set(p.attributes) for p in plans)) & set(source.attributes))
    values = {name: torch.cat([p.attributes[name] for p in plans])[index] for name in names}
    ones = [torch.ones(len(p.layout.rooms), dtype=torch.bool) for p in plans]
    # (m, len(names)) bool: which attribute each room asks for
    pattern = torch.stack(
        [torch.cat([p.asked.get(name, one) for p, one in zip(plans, ones)])[index] for name in names]
        + [torch.ones(index.numel(), dtype=torch.bool)],
        dim=1,
    )
    out = torch.empty(index.numel(), ROOM_H, ROOM_W, dtype=torch.uint8)
    for k, key in enumerate(pattern.unique(dim=0).flip(0)):  # the group asking for everything first
        rows = (pattern == key).all(1).nonzero().flatten()
        attributes = {name: values[name][rows] for j, name in enumerate(names) if key[j]}
        rooms = source.rooms(doors[rows], stairs[rows], attributes, seed=seed + k * _GROUP_SEED)
        if tuple(rooms.shape) != (rows.numel(), ROOM_H, ROOM_W):
            raise ValueError(
                f"room source {source.name!r} returned shape {tuple(rooms.shape)} for {rows.numel()} rooms"
            )
        out[rows] = rooms.to(torch.uint8)
    return out


def _walk_one(job: tuple[Plan, torch.Tensor, torch.Tensor, int]) -> tuple[WalkResult, PlayResult, MissionResult]:
    """Walk and play one dungeon (a worker's job): its plan, rooms `(n, 16, 11)` long and their walkable labels
    `(n, 16, 11)`, the player's state bound. Tile passages are found once for the walk and the player."""
    p, rooms, labels, max_states = job
    found = tile_passages(p.layout, p.embedding, rooms, labels)
    return (
        walk_dungeon(p.layout, p.embedding, rooms, labels, found),
        play_dungeon(p.layout, p.embedding, rooms, labels, max_states, found),
        check_mission(p.layout, max_states),
    )


def _walk_all(
    plans: Sequence[Plan], rooms: torch.Tensor, max_states: int, workers: Workers
) -> list[tuple[WalkResult, PlayResult, MissionResult]]:
    """Walk, play and check the mission of every plan on its part of `rooms` (all dungeons' rooms, concatenated)."""
    labels = walkable_components(rooms)  # (N, 16, 11): all rooms of all dungeons in one batch
    sizes = [len(p.layout.rooms) for p in plans]
    # each dungeon's own copies: a view would pickle (to a worker) the storage of every dungeon's rooms
    mine = [(r.clone(), lab.clone()) for r, lab in zip(rooms.long().split(sizes), labels.split(sizes))]
    return workers.map(_walk_one, [(p, r, lab, max_states) for p, (r, lab) in zip(plans, mine)])


def build_dungeons(
    plans: Sequence[Plan],
    source: RoomSource,
    config: DungeonConfig = DEFAULT_CONFIG,
    seed: int = 0,
    workers: Workers = IN_PROCESS,
) -> list[Dungeon]:
    """Generate the rooms of every plan in batched calls with bounded regeneration (module docstring); the walks
    and plays run on `workers` (`hmolqd.dungeon.workers`: the same dungeons wherever they run)."""
    if not plans:
        return []
    total = sum(len(p.layout.rooms) for p in plans)
    rooms = _generate(plans, torch.arange(total), source, seed)  # (N, 16, 11), all dungeons in one call
    generated = torch.ones(total, dtype=torch.int64)
    walks_before = _walk_all(plans, rooms, config.mission_max_states, workers)
    reasons = room_failures(plans, rooms)
    for round_ in range(1, config.max_regenerations + 1):
        failing = torch.tensor([i for i, r in enumerate(reasons) if r], dtype=torch.long)
        if failing.numel() == 0:
            break
        rooms[failing] = _generate(plans, failing, source, seed + round_ * _ROUND_SEED)
        generated[failing] += 1
        reasons = room_failures(plans, rooms)
    # A dungeon none of whose rooms was regenerated walks and plays as before: only the others are walked again.
    sizes = [len(p.layout.rooms) for p in plans]
    changed = [bool((part > 1).any()) for part in generated.split(sizes)]
    again = [p for p, c in zip(plans, changed) if c]
    parts = [r for r, c in zip(rooms.split(sizes), changed) if c]
    redone = iter(_walk_all(again, torch.cat(parts), config.mission_max_states, workers) if again else [])
    walks = [next(redone) if c else w for c, w in zip(changed, walks_before)]
    out, base = [], 0
    for p, (before, play_before, _), (after, play_after, mission) in zip(plans, walks_before, walks):
        n = len(p.layout.rooms)
        failures = {room.id: reasons[base + k] for k, room in enumerate(p.layout.rooms) if reasons[base + k]}
        out.append(
            Dungeon(
                plan=p,
                rooms=rooms[base : base + n].clone(),
                generated=generated[base : base + n].clone(),
                failures=failures,
                walk_before=before,
                walk=after,
                mission=mission,
                source=source.name,
                play=play_after,
                play_before=play_before,
            )
        )
        base += n
    return out

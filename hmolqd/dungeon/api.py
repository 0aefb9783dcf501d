"""One call from a room model (or any room source) to finished dungeons, and to their files.

`generate_dungeons` is the batched entry point (the bench and the evaluation report use it);
`generate_dungeon` makes one dungeon and optionally writes its files (the CLI and the notebook use it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hmolqd.dungeon.build import DEFAULT_CONFIG, Dungeon, DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.export import write_dungeon
from hmolqd.dungeon.layout import Layout, read_layout
from hmolqd.dungeon.sampler import DEFAULT_SAMPLER, SamplerConfig, sample_layout
from hmolqd.dungeon.source import ModelRoomSource, RoomSource


def as_source(model: Any, **sampling: Any) -> RoomSource:
    """A `RoomSource` as is; a room model (anything with `.vqvae` and `.diffusion`), or the path of its
    `model_final.pt`, through `ModelRoomSource` with the sampling keys `sampling` (steps, guidance, eta,
    door_guidance, batch_size)."""
    if isinstance(model, (str, Path)):
        from hmolqd.checkpointing.export import load_model

        model = load_model(model)
    if isinstance(model, RoomSource):
        if sampling:
            raise ValueError(
                f"sampling keys {sorted(sampling)} apply to a room model, not to the room source {model.name!r}"
            )
        return model
    if hasattr(model, "vqvae") and hasattr(model, "diffusion"):
        return ModelRoomSource(model, **sampling)
    raise TypeError(f"expected a room model or a RoomSource, got {type(model).__name__}")


def layouts_for(
    graphs: Sequence[str | Path | Layout] | None,
    count: int,
    rooms: int | None,
    seed: int,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> list[Layout]:
    """The given graphs (paths are read with `read_layout`), or `count` layouts sampled with seeds seed, seed+1, ..."""
    if graphs:
        if rooms is not None:
            raise ValueError("give graphs or a room count for sampled layouts, not both")
        return [g if isinstance(g, Layout) else read_layout(g) for g in graphs]
    if count < 1:
        raise ValueError(f"give graphs or a count >= 1 of layouts to sample, got count={count}")
    return [sample_layout(seed + i, rooms=rooms, config=sampler) for i in range(count)]


def generate_dungeons(
    model: Any,
    graphs: Sequence[str | Path | Layout] | None = None,
    *,
    count: int = 1,
    rooms: int | None = None,
    seed: int = 0,
    config: DungeonConfig = DEFAULT_CONFIG,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
    **sampling: Any,
) -> list[Dungeon]:
    """Dungeons for `graphs` (or `count` sampled layouts of `rooms` rooms), all rooms in batched calls."""
    layouts = layouts_for(graphs, count, rooms, seed, sampler)
    plans = [plan(layout, config, seed=seed) for layout in layouts]
    return build_dungeons(plans, as_source(model, **sampling), config, seed=seed)


def generate_dungeon(
    model: Any,
    graph: str | Path | Layout | None = None,
    *,
    rooms: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    stem: str = "dungeon",
    config: DungeonConfig = DEFAULT_CONFIG,
    **sampling: Any,
) -> Dungeon:
    """One dungeon from a room model (a `RoomModel`, the path of `model_final.pt`, or any RoomSource): for the
    room graph `graph` (a VGLC .dot, any name), or for a layout sampled with `seed` (`rooms` rooms, default:
    drawn like the real dungeons). With `out`, writes `<stem>.txt`, `.dot`, `.png`, `.json` there
    (`hmolqd.dungeon.export`). `sampling`: steps, guidance, eta, door_guidance of the room model."""
    if graph is not None and rooms is not None:
        raise ValueError("give a graph or a room count for a sampled layout, not both")
    (dungeon,) = generate_dungeons(
        model, [graph] if graph is not None else None, rooms=rooms, seed=seed, config=config, **sampling
    )
    if out is not None:
        write_dungeon(dungeon, out, stem=stem)
    return dungeon


def dungeon_metrics(dungeons: Sequence[Dungeon]) -> dict[str, Any]:
    """Shares over built dungeons: doors agreeing, rooms with the doors asked, walkable before / after
    regeneration, goal reached, mission beatable; rooms regenerated and still failing (per room)."""
    rooms = sum(len(d.layout.rooms) for d in dungeons)

    def share(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    door_ok = [
        not any(r.startswith("doors ") for r in d.failures.get(room.id, ()))
        for d in dungeons
        for room in d.layout.rooms
    ]
    return {
        "dungeons": len(dungeons),
        "rooms": rooms,
        "doors_agree": share([d.walk.doors_agree for d in dungeons]),
        "rooms_with_doors_asked": share(door_ok),
        "walkable_before": share([d.walk_before.walkable for d in dungeons]),
        "walkable": share([d.walk.walkable for d in dungeons]),
        "goal_reached": share([d.walk.goal_reached for d in dungeons]),
        "mission_beatable": share([d.mission.beatable for d in dungeons]),
        "rooms_regenerated": share([bool(g > 1) for d in dungeons for g in d.generated.tolist()]),
        "rooms_failing": share([room.id in d.failures for d in dungeons for room in d.layout.rooms]),
        "extra_generations_per_room": sum(int((d.generated - 1).sum()) for d in dungeons) / rooms if rooms else None,
    }


def evaluation_section(
    model: Any, data_dir: str | Path, *, seed: int = 0, config: DungeonConfig = DEFAULT_CONFIG, **sampling: Any
) -> dict[str, Any]:
    """The dungeon section of the evaluation report: the 18 real room graphs of `data_dir` built once with
    `seed` (one batched build), as `dungeon_metrics` plus the settings and the seconds it took; a data
    folder without `Graph Processed/` gives {"skipped": why}."""
    from hmolqd.data.graph import graph_dir
    from hmolqd.data.vglc import VGLCFormatError

    try:
        graphs = sorted(graph_dir(data_dir).glob("*.dot"))
    except VGLCFormatError as err:  # a corpus of rooms only: nothing to build dungeons from
        return {"skipped": str(err)}
    start = time.perf_counter()
    dungeons = generate_dungeons(model, graphs, seed=seed, config=config, **sampling)
    seconds = time.perf_counter() - start
    return {
        **dungeon_metrics(dungeons),
        "graphs": [g.stem for g in graphs],
        "seed": seed,
        "seconds": seconds,
        "max_regenerations": config.max_regenerations,
        "not_walkable": [d.layout.name for d in dungeons if not d.walk.walkable],
    }


def _count(n: int, one: str, many: str) -> str:
    """'no small keys', '1 small key', '3 small keys'."""
    return f"no {many}" if n == 0 else f"1 {one}" if n == 1 else f"{n} {many}"


# What a room's failure reason (hmolqd.dungeon.build.room_failures) is counted as in the summary, by its start;
# any other reason is a door that does not line up with its neighbour's.
_FAILURE_KINDS = (
    ("not playable", "not playable"),
    ("doors ", "other doors than asked"),
    ("stairs", "other stairs than asked"),
    ("no stairs", "other stairs than asked"),
    ("start room", "the start cut off from its doors"),
)
_OUT_OF_LINE = "a door out of line with its neighbour's"


def _failure_counts(failures: dict[int, tuple[str, ...]]) -> str:
    """'3 not playable, 2 other doors than asked': rooms per kind of failed check (a room may count under several),
    in the order of _FAILURE_KINDS."""
    counts = dict.fromkeys([kind for _, kind in _FAILURE_KINDS] + [_OUT_OF_LINE], 0)
    for reasons in failures.values():
        for kind in {next((k for start, k in _FAILURE_KINDS if r.startswith(start)), _OUT_OF_LINE) for r in reasons}:
            counts[kind] += 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)


def format_summary(dungeon: Dungeon) -> str:
    """A few lines for a terminal: size, the rooms' checks, walkability on the tiles, the lock order, the player."""
    s = dungeon.summary()
    regen = s["regeneration"]
    walk, before, mission, play = dungeon.walk, dungeon.walk_before, dungeon.mission, dungeon.play
    n = s["rooms"]
    remade = regen["rooms_regenerated"]
    if dungeon.failures:
        checks = f"{len(dungeon.failures)} of {n} still fail a check ({_failure_counts(dungeon.failures)})"
    else:
        checks = f"all {n} pass their checks (playable, doors and stairs as asked)"
    lines = [
        f"dungeon {s['name']} ({s['source']}): {n} rooms on a {s['grid'][0]}x{s['grid'][1]} grid, "
        f"{_count(s['door_links'], 'door', 'doors')}, {_count(s['stair_links'], 'stair link', 'stair links')}, "
        f"{_count(s['locked_doors'], 'locked door', 'locked doors')}",
        f"rooms from {s['room_source']}: {checks}; {remade} of {n} rooms were made again",
        f"walkable: {'yes' if walk.walkable else 'no'} ({walk.reached} of {walk.rooms} rooms reached from the start on "
        f"the tiles; {before.reached} of {before.rooms} before any room was made again); doors of neighbours agree: "
        f"{'yes' if walk.doors_agree else 'no'}",
        f"locks on the room graph: {'can' if mission.beatable else 'can NOT'} be opened in an order that reaches the "
        f"goal ({_count(mission.keys, 'small key', 'small keys')}, "
        f"{_count(mission.key_doors, 'door needs', 'doors need')} a small key"
        + (f", {mission.keys_used} of them opened on the way" if mission.key_doors else "")
        + "; every way to the goal passes the boss room: "
        f"{'yes' if mission.boss_before_goal else 'no'})" + ("" if mission.beatable else f"; stuck: {mission.stuck}"),
    ]
    if play is not None:
        lines.append(
            f"played on the tiles: {'beaten' if play.beaten else 'NOT beaten'}"
            + (f" ({play.rooms_on_path} rooms on the way to the goal)" if play.beaten else f"; stuck: {play.stuck}")
        )
    for room_id, reasons in sorted(dungeon.failures.items())[:5]:
        lines.append(f"  room {room_id}: {'; '.join(reasons)}")
    if len(dungeon.failures) > 5:
        lines.append(f"  ... and {len(dungeon.failures) - 5} more rooms (all in dungeon.json)")
    return "\n".join(lines)


def why_not_usable(dungeon: Dungeon) -> str:
    """'' when the dungeon is walkable on its tiles and the player beats it; else one sentence saying why not."""
    walk, play = dungeon.walk, dungeon.play
    if not walk.walkable:
        unreached = ", ".join(str(r) for r in walk.unreached[:8]) + (", ..." if len(walk.unreached) > 8 else "")
        why = f"not walkable: {walk.reached} of {walk.rooms} rooms can be reached from the start (not: {unreached})"
        problems = list(walk.disagreements[:2]) + list(walk.misaligned[:1])
        if dungeon.failures:
            problems.append(f"{len(dungeon.failures)} rooms still fail a check ({_failure_counts(dungeon.failures)})")
        return why + ("; " + "; ".join(problems) if problems else "")
    if play is not None and not play.beaten:
        return f"walkable, but the player cannot beat it: {play.stuck}"
    return ""

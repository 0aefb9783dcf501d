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


def format_summary(dungeon: Dungeon) -> str:
    """A few lines for a terminal: size, regeneration, walkability, mission."""
    s = dungeon.summary()
    regen = s["regeneration"]
    walk, before, mission = dungeon.walk, dungeon.walk_before, dungeon.mission
    lines = [
        f"dungeon {s['name']} ({s['source']}): {s['rooms']} rooms on a {s['grid'][0]}x{s['grid'][1]} grid, "
        f"{s['door_links']} doors, {s['stair_links']} stair links, {s['locked_doors']} locked doors",
        f"rooms from {s['room_source']}: {regen['rooms_regenerated']} regenerated "
        f"({100 * regen['share_regenerated']:.0f} %), "
        f"{regen['rooms_failing']} still failing, {s['playable']} of {s['rooms']} playable",
        f"walkable: {'yes' if walk.walkable else 'no'} ({walk.reached}/{walk.rooms} rooms reached; before regeneration "
        f"{before.reached}/{before.rooms}); doors agree: {'yes' if walk.doors_agree else 'no'}",
        f"mission: {'beatable' if mission.beatable else 'NOT beatable'} "
        f"({mission.keys} keys, {mission.key_doors} key doors, "
        f"{mission.keys_used} used; boss before goal: {'yes' if mission.boss_before_goal else 'no'})"
        + ("" if mission.beatable else f"; stuck: {mission.stuck}"),
    ]
    for room_id, reasons in sorted(dungeon.failures.items())[:5]:
        lines.append(f"  room {room_id}: {'; '.join(reasons)}")
    return "\n".join(lines)

"""Whole dungeons: from a room graph (or a sampled layout) to a finished, walkable dungeon of generated rooms.

Owns: layouts and their door kinds (`layout`), layout sampling and statistics (`sampler`), grid embedding
(`embed`), the key/lock mission check (`mission`), room sources (`source`: the room model, a Markov chain,
the corpus), batched generation with bounded regeneration (`build`), tile-level walkability (`walk`),
the whole-dungeon player over keys, locks and tiles (`play`, on the cells of `cells`; its rules in `rules`,
the ladder and pushed-block crossings inside a room in `crossings`), the 18 real dungeons played from their
VGLC maps and graphs (`real`) and what stops the unbeaten ones (`real_causes`), the files of a dungeon
(`export`) and the one-call entry points (`api`).

May import: `hmolqd.data`, `hmolqd.render`, `hmolqd.atomic`, `hmolqd.sampling` and `hmolqd.evaluation`
(imports point down). Nothing here imports training, the CLI or the package API; those call in here.

Typical use::

    from hmolqd.dungeon import generate_dungeon
    dungeon = generate_dungeon(model, "LoZ_1.dot", seed=0, out="runs/dungeon_LoZ_1")   # or rooms=20: a sampled layout
    print(format_summary(dungeon))
"""

from __future__ import annotations

from hmolqd.dungeon.api import (
    as_source,
    format_summary,
    generate_dungeon,
    generate_dungeons,
    why_not_usable,
)
from hmolqd.dungeon.build import Dungeon, DungeonConfig, Plan, build_dungeons, plan
from hmolqd.dungeon.embed import Embedding, EmbeddingError, embed
from hmolqd.dungeon.export import write_dungeon
from hmolqd.dungeon.layout import (
    Layout,
    LayoutError,
    Link,
    Room,
    layout_from_graph,
    read_layout,
)
from hmolqd.dungeon.mission import MissionResult, check_mission
from hmolqd.dungeon.play import PlayResult, play_dungeon, play_layout
from hmolqd.dungeon.sampler import SamplerConfig, layout_stats, sample_layout
from hmolqd.dungeon.source import (
    CorpusRoomSource,
    MarkovRoomSource,
    ModelRoomSource,
    PlainRoomSource,
    RoomSource,
    plain_rooms,
)
from hmolqd.dungeon.walk import WalkResult, walk_dungeon

__all__ = [
    "CorpusRoomSource",
    "Dungeon",
    "DungeonConfig",
    "Embedding",
    "EmbeddingError",
    "Layout",
    "LayoutError",
    "Link",
    "MarkovRoomSource",
    "MissionResult",
    "ModelRoomSource",
    "Plan",
    "PlainRoomSource",
    "PlayResult",
    "Room",
    "RoomSource",
    "SamplerConfig",
    "WalkResult",
    "as_source",
    "build_dungeons",
    "check_mission",
    "embed",
    "format_summary",
    "generate_dungeon",
    "generate_dungeons",
    "layout_from_graph",
    "layout_stats",
    "plain_rooms",
    "plan",
    "play_dungeon",
    "play_layout",
    "read_layout",
    "sample_layout",
    "walk_dungeon",
    "why_not_usable",
    "write_dungeon",
]

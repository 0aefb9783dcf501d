"""The VGLC Zelda data pipeline: room and graph parsers, corpus discovery and pinned download (`fetch`),
split, augmentation (mirrors, redrawn doors), statistics, and facts about a single room (`tiles`: doors,
stairs, mirror axes; `playability`; `attributes`: the condition tokens of doors, stairs and room attributes).

May import: `hmolqd.config`, `hmolqd.atomic` (the bottom layer: nothing else in hmolqd).

Typical use::

    from hmolqd.data import find_data_dir, load_corpus, split_corpus, augment_mirror
    root = find_data_dir(config.data.data_dir)
    train, val = split_corpus(load_corpus(root), config.data.val_dungeons)
    if config.data.mirror_augment:
        train = augment_mirror(train)
"""

from __future__ import annotations

from hmolqd.data.dataset import (
    DEFAULT_DATA_DIR,
    FETCH_COMMAND,
    MIRRORS,
    DataNotFoundError,
    augment_doors,
    augment_mirror,
    augment_recombine,
    find_data_dir,
    mirror_corpus,
    split_corpus,
)
from hmolqd.data.graph import (
    DungeonGraph,
    Edge,
    Node,
    UndirectedEdge,
    load_graphs,
    parse_dot,
    parse_label,
)
from hmolqd.data.stats import corpus_stats, format_stats
from hmolqd.data.vglc import (
    Corpus,
    RoomMeta,
    VGLCFormatError,
    load_corpus,
    parse_room_file,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "FETCH_COMMAND",
    "MIRRORS",
    "Corpus",
    "DataNotFoundError",
    "augment_doors",
    "augment_recombine",
    "DungeonGraph",
    "Edge",
    "Node",
    "RoomMeta",
    "UndirectedEdge",
    "VGLCFormatError",
    "augment_mirror",
    "corpus_stats",
    "find_data_dir",
    "format_stats",
    "load_corpus",
    "load_graphs",
    "mirror_corpus",
    "parse_dot",
    "parse_label",
    "parse_room_file",
    "split_corpus",
]

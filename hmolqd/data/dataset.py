"""Find the corpus, split it by whole dungeons, and mirror rooms with their doors.

The split is by dungeon so that validation rooms come from levels the model never saw (rooms repeat
a lot within and across quests of the same level: 459 rooms, 267 distinct).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch

from hmolqd.config import ConfigError, kaggle_input
from hmolqd.data import tiles
from hmolqd.data.vglc import (
    PROCESSED,
    ROOM_GLOB,
    Corpus,
    RoomMeta,
    VGLCFormatError,
    processed_dir,
)

DEFAULT_DATA_DIR = Path("data/vglc-zelda")
FETCH_COMMAND = "python -m hmolqd fetch-data ./data/vglc-zelda"
MIRRORS = ("rows", "cols", "both")
# Side permutation of a mirror, as indices into tiles.SIDES (top, bottom, left, right):
# flipping rows swaps top/bottom, flipping columns swaps left/right.
_SIDE_PERM = {"rows": (1, 0, 2, 3), "cols": (0, 1, 3, 2), "both": (1, 0, 3, 2)}
_FLIP_DIMS = {"rows": (1,), "cols": (2,), "both": (1, 2)}  # dims of (N, 16, 11)


class DataNotFoundError(VGLCFormatError, FileNotFoundError):
    """No usable VGLC folder; the message says where it looked and how to download the corpus."""


def zelda_root(folder: Path) -> Path:
    """The VGLC 'The Legend of Zelda' folder for `folder` = that folder, its Processed/, or a flat folder of
    tloz*.txt."""
    found = processed_dir(folder)
    return found.parent if found.name == PROCESSED else found


def _search(root: Path) -> Path | None:
    """First folder under `root` (sorted walk, any depth) that directly holds a tloz*.txt file."""
    if not root.is_dir():
        return None
    seen: set[str] = set()
    # Follow links (a Kaggle input may be a linked folder) but visit each real folder once (no link loops).
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames.sort()  # deterministic order
        if any(Path(name).match(ROOM_GLOB) for name in filenames):
            return Path(dirpath)
    return None


def find_data_dir(
    configured: str | os.PathLike | None,
    kaggle_root: Path | None = None,
    default: Path = DEFAULT_DATA_DIR,
    key: str = "data_dir",
) -> Path:
    """Where the corpus is: `configured` if given, else a Kaggle input holding tloz*.txt, else `default`.

    Returns the folder containing Processed/ (being pointed at Processed/ itself is accepted). A
    configured folder that does not exist, is not a folder, or holds no tloz*.txt is an error naming it;
    nothing found is an error that prints the download command. `key` is how the caller's user names the
    setting in those messages: the config key "data_dir", or a command-line flag such as "--data".
    """
    if configured is not None:
        folder = Path(configured)
        if not folder.exists():
            raise DataNotFoundError(f"{key} {str(folder)!r} does not exist. {_download_hint(key)}")
        if not folder.is_dir():
            raise DataNotFoundError(f"{key} {str(folder)!r} is not a folder. {_download_hint(key)}")
        try:
            return zelda_root(folder)
        except VGLCFormatError as err:
            raise DataNotFoundError(
                f"{key} {str(folder)!r} holds no {ROOM_GLOB} (nor its {PROCESSED}/ subfolder). {_download_hint(key)}"
            ) from err
    kaggle_root = kaggle_input() if kaggle_root is None else kaggle_root
    found = _search(kaggle_root)
    if found is not None:
        return zelda_root(found)
    try:
        return zelda_root(default)
    except VGLCFormatError:
        pass  # fall through to the error that lists every place searched
    unset = f"{key} is not given" if key.startswith("--") else f"{key} is not set"
    raise DataNotFoundError(
        f"VGLC Zelda corpus not found: {unset}, no {ROOM_GLOB} under {kaggle_root}, "
        f"and none in {default} or {default / PROCESSED}. {_download_hint(key)}"
    )


def _download_hint(key: str = "data_dir") -> str:
    where = f"pass {key} FOLDER with" if key.startswith("--") else f"set {key} to"
    return f"Download it with `{FETCH_COMMAND}`, or {where} the VGLC 'The Legend of Zelda' folder."  # one line


def check_val_dungeons(val_dungeons: Iterable[str], dungeons: Iterable[str]) -> None:
    """The split's rule on names alone (a ConfigError naming the key): every held-out dungeon is in `dungeons`."""
    val, dungeons = tuple(val_dungeons), tuple(dungeons)
    missing = [name for name in val if name not in dungeons]
    if missing:
        raise ConfigError(
            f"config key 'val_dungeons' = {list(val)!r}: {missing} not in the corpus; "
            f"available dungeons: {', '.join(dungeons)}"
        )


def dungeon_names(data_dir: Path) -> tuple[str, ...]:
    """The dungeons of a corpus folder from its file names alone (sorted, as `load_corpus` reads them)."""
    return tuple(path.stem for path in sorted(processed_dir(data_dir).glob(ROOM_GLOB)))


def split_corpus(corpus: Corpus, val_dungeons: Iterable[str]) -> tuple[Corpus, Corpus]:
    """(train, val): every room of a dungeon in `val_dungeons` goes to val, the rest to train, order kept."""
    val = tuple(val_dungeons)
    check_val_dungeons(val, corpus.dungeons)
    if not val:
        raise ConfigError("config key 'val_dungeons' is empty: hold out at least one dungeon")
    in_val = [m.dungeon in val for m in corpus.meta]
    if all(in_val):
        raise ValueError(f"val_dungeons {list(val)} cover every dungeon; the training split would be empty")
    train_idx = [i for i, v in enumerate(in_val) if not v]
    val_idx = [i for i, v in enumerate(in_val) if v]
    return corpus.subset(train_idx), corpus.subset(val_idx)


def mirror_corpus(corpus: Corpus, mirror: str) -> Corpus:
    """Every room mirrored as a whole dungeon: "rows" (top <-> bottom), "cols" (left <-> right) or "both".

    Doors and neighbours swap sides and slot positions flip within each dungeon grid, so the result is
    again a consistent set of dungeons; `RoomMeta.mirrored` records the mirror. Raises if the doors found
    by `tiles.door_sides` on the mirrored rooms differ from the mirrored metadata (an asymmetric door).
    """
    if mirror not in _SIDE_PERM:
        raise ValueError(f"mirror must be one of {MIRRORS}, got {mirror!r}")
    perm = _SIDE_PERM[mirror]
    rooms = corpus.rooms.flip(_FLIP_DIMS[mirror]).contiguous()  # (N, 16, 11)
    meta = tuple(_mirror_meta(m, mirror, perm) for m in corpus.meta)
    found = tiles.door_sides(rooms)  # (N, 4)
    expected = torch.tensor([m.doors for m in meta], dtype=torch.bool).reshape(len(meta), 4)
    bad = (found != expected).any(1).nonzero().flatten().tolist()
    if bad:
        m = meta[bad[0]]
        raise ValueError(
            f"mirror {mirror!r} broke the doors of {len(bad)} room(s), e.g. index {bad[0]} "
            f"({m.dungeon} slot {m.slot_row},{m.slot_col}): door_sides {found[bad[0]].tolist()} "
            f"!= metadata {list(m.doors)}"
        )
    return Corpus(rooms=rooms, meta=meta)


def _mirror_meta(meta: RoomMeta, mirror: str, perm: tuple[int, ...]) -> RoomMeta:
    rows, cols = meta.grid_shape
    flip_rows, flip_cols = mirror in ("rows", "both"), mirror in ("cols", "both")
    return replace(
        meta,
        slot_row=rows - 1 - meta.slot_row if flip_rows else meta.slot_row,
        slot_col=cols - 1 - meta.slot_col if flip_cols else meta.slot_col,
        doors=tuple(meta.doors[p] for p in perm),
        neighbors=tuple(meta.neighbors[p] for p in perm),
        mirrored=_compose(meta.mirrored, mirror),
    )


def _compose(before: str, mirror: str) -> str:
    """Mirrors compose like bit flips: rows then rows is the identity, rows then cols is both."""
    bits = {"": 0, "rows": 1, "cols": 2, "both": 3}
    return {v: k for k, v in bits.items()}[bits[before] ^ bits[mirror]]


def augment_mirror(corpus: Corpus, mirrors: Iterable[str] = ("rows", "cols")) -> Corpus:
    """The corpus followed by one mirrored copy per entry of `mirrors`; neighbours stay within each copy."""
    parts = [corpus] + [mirror_corpus(corpus, m) for m in mirrors]
    meta: list[RoomMeta] = []
    for part in parts:
        offset = len(meta)
        meta.extend(replace(m, neighbors=tuple(n + offset if n >= 0 else -1 for n in m.neighbors)) for m in part.meta)
    return Corpus(rooms=torch.cat([p.rooms for p in parts]), meta=tuple(meta))


def with_doors(rooms: torch.Tensor, doors: torch.Tensor) -> torch.Tensor:
    """Rooms `(N, 16, 11)` with the door tiles of every side (`tiles.DOOR_TILES`) set to door D where
    `doors (N, 4)` is True and to wall W elsewhere."""
    out = rooms.clone()
    for side, (rows, cols) in enumerate(tiles.DOOR_TILES):
        # every side's door is one row or column of tiles: out[:, rows, cols] is (N, tiles of that side)
        out[:, rows, cols] = torch.where(doors[:, side], tiles.DOOR, tiles.WALL).to(out.dtype).view(-1, 1)
    return out


def augment_doors(corpus: Corpus, copies: int, seed: int) -> Corpus:
    """The corpus followed by `copies` variants of every room with its door sides redrawn uniformly from the
    16 door sets (seeded), the interior kept: an interior is seen with many door sets, so the model learns
    doors as a condition rather than as part of a memorised room (DataConfig.door_augment; 0 = as is).
    Variants have no neighbours (-1)."""
    if copies < 0:
        raise ValueError(f"augment_doors: copies must be >= 0 (config key door_augment), got {copies}")
    g = torch.Generator().manual_seed(seed)
    rooms, meta = [corpus.rooms], list(corpus.meta)
    for _ in range(copies):
        doors = torch.rand(len(corpus), 4, generator=g) < 0.5  # (N, 4)
        rooms.append(with_doors(corpus.rooms, doors))
        meta += [
            replace(m, doors=tuple(d), neighbors=(-1,) * len(m.neighbors)) for m, d in zip(corpus.meta, doors.tolist())
        ]
    return Corpus(rooms=torch.cat(rooms), meta=tuple(meta))


# Where a recombined interior switches from room A to room B: interior rows 3-9 of 12 (a band of at least 3 rows
# from each) or interior columns 2-5 of 7. Interior-relative, see `tiles.INTERIOR`.
_SPLITS = {"rows": range(3, 10), "cols": range(2, 6)}
_CANDIDATES_PER_ROOM = 8  # candidates drawn per room wanted; most fail the pattern rule (about 4 in 10 pass)


def augment_recombine(corpus: Corpus, copies: int, seed: int) -> Corpus:
    """The corpus followed by `copies` x N new rooms made of real parts (DataConfig.recombine_augment; 0 = none):
    room A with the interior rows (or columns) from a drawn split point on taken from room B, A and B drawn from
    the corpus (so common interiors stay common), kept only if

    - every 2 x 2 tile window of the new room occurs somewhere in the corpus (no pattern Zelda never shows), and
    - its interior is no corpus room's interior (it is a new room, not a copy), and
    - neither A nor B has void (`-`) inside its walls: half a void room is no floor plan.

    VGLC has few distinct interiors (78 with mirrors in the default split); a model that copies this larger set
    makes interiors that are new to the corpus out of its local patterns. The walls and doors are A's; stairs are
    re-measured on the tiles, and the condition attributes are measured on the room itself when training. Fewer
    rooms come back only if the seeded draws run out (8 candidates per room wanted). Variants have no
    neighbours (-1)."""
    if copies < 0:
        raise ValueError(f"augment_recombine: copies must be >= 0 (config key recombine_augment), got {copies}")
    want = copies * len(corpus)
    if want == 0:
        return corpus
    rooms = corpus.rooms.long()  # (N, 16, 11)
    g = torch.Generator().manual_seed(seed)
    m = want * _CANDIDATES_PER_ROOM
    a = torch.randint(0, len(corpus), (m,), generator=g)  # (m,) host room of each candidate
    b = torch.randint(0, len(corpus), (m,), generator=g)  # (m,) room giving the second part
    by_rows = torch.rand(m, generator=g) < 0.5  # (m,) split across rows, else across columns
    row_at = torch.randint(_SPLITS["rows"].start, _SPLITS["rows"].stop, (m,), generator=g)
    col_at = torch.randint(_SPLITS["cols"].start, _SPLITS["cols"].stop, (m,), generator=g)
    r = torch.arange(tiles.ROOM_H - 2 * tiles.BAND_WIDTH).view(1, -1, 1)  # interior row index (1, 12, 1)
    c = torch.arange(tiles.ROOM_W - 2 * tiles.BAND_WIDTH).view(1, 1, -1)  # interior column index (1, 1, 7)
    from_b = torch.where(by_rows.view(-1, 1, 1), r >= row_at.view(-1, 1, 1), c >= col_at.view(-1, 1, 1))  # (m, 12, 7)
    new = rooms[a].clone()
    inside = (slice(None), *tiles.INTERIOR)
    new[inside] = torch.where(from_b, rooms[b][inside], new[inside])
    seen = torch.unique(tiles.pattern_codes(rooms, 2))
    legal = torch.isin(tiles.pattern_codes(new, 2), seen).view(m, -1).all(1)  # (m,)
    inner = new[inside].flatten(1)  # (m, 84)
    known = torch.unique(rooms[inside].flatten(1), dim=0)  # (U, 84)
    copied = torch.zeros(m, dtype=torch.bool)
    for lo in range(0, m, 4096):  # (chunk, U, 84) at a time
        copied[lo : lo + 4096] = (inner[lo : lo + 4096, None] == known[None]).all(-1).any(1)
    void = (rooms[inside] == tiles.VOID).flatten(1).any(1)  # (N,) a room with void inside has no floor plan to lend
    keep = (legal & ~copied & ~void[a] & ~void[b]).nonzero().flatten()[:want]  # the first `want` in draw order
    made = new[keep].to(torch.uint8)
    stairs = tiles.has_stairs(made).tolist()
    meta = [
        replace(corpus.meta[i], stairs=s, neighbors=(-1,) * len(corpus.meta[i].neighbors))
        for i, s in zip(a[keep].tolist(), stairs)
    ]
    return Corpus(rooms=torch.cat([corpus.rooms, made]), meta=corpus.meta + tuple(meta))

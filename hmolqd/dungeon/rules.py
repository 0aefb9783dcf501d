"""The rules of the whole-dungeon player (`hmolqd.dungeon.play`, module docstring): which passages pass with
what the player holds, what a room gives on entering, and the `PlayResult` that a play reports."""

from __future__ import annotations

from dataclasses import dataclass

from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.layout import Layout, switch_codes

FREE_KINDS: frozenset[str] = frozenset({"open", "soft", "bomb"})
# Ways inside one room (`hmolqd.dungeon.crossings`, the tile geometry): over one element tile P with the ladder,
# and past a block that a puzzle room lets the player push. They serve no link (`NO_LINK`).
LADDER, PUSH = "ladder", "push"
NO_LINK = -1
# What entering a room picks up (and switch codes S, S1, ...).
PICKUPS: frozenset[str] = frozenset({RoomLabel.KEY, RoomLabel.BOSS_KEY, RoomLabel.KEY_ITEM})


def passable(
    kind: str, link: int, link_labels: frozenset[str], opened: frozenset[int], carried: frozenset[str]
) -> bool:
    """May the player travel a passage of kind `kind` (of link `link`) with `opened` key doors and `carried` codes?"""
    return (
        kind in FREE_KINDS
        or kind == PUSH
        or (kind == LADDER and RoomLabel.KEY_ITEM in carried)  # the ladder is a key item
        or link in opened
        or (kind == "boss" and RoomLabel.BOSS_KEY in carried)
        or (kind == "item" and RoomLabel.KEY_ITEM in carried)
        or (kind == "switch" and bool(switch_codes(link_labels) & switch_codes(carried)))
    )


def link_labels(layout: Layout, link: int) -> frozenset[str]:
    """The label codes of link `link` (an index into `layout.links`); none for a way inside a room (`NO_LINK`)."""
    return layout.links[link].labels if link != NO_LINK else frozenset()


def reversible(layout: Layout) -> bool:
    """Every link passes both ways under the same condition: then what the player reaches it can leave again,
    and the closure over opened-door sets is exact (no need to search where the player stands)."""
    return all(
        link.kind_ab == link.kind_ba or (link.kind_ab in FREE_KINDS and link.kind_ba in FREE_KINDS)
        for link in layout.links
    )


def has_pickup(codes: frozenset[str]) -> bool:
    return bool(codes & PICKUPS) or bool(switch_codes(codes))


@dataclass(frozen=True)
class PlayResult:
    beaten: bool
    rooms_path: tuple[int, ...]  # room ids in visiting order (a room once per stay)
    tiles: tuple[tuple[int, int, int], ...]  # (room id, row, col) walked; () for a layout-level play
    length: int  # tile steps inside rooms + one per passage (layout-level: room moves)
    rooms_on_path: int  # distinct rooms on the path
    rooms: int
    backtracking: int  # entries into a room already left before
    rooms_backtracked: int  # distinct rooms re-entered
    keys: int  # rooms labelled k
    key_doors: int  # links with a key-locked direction
    keys_used: int  # key doors opened on the solution (or at the best dead end)
    reached: int  # rooms reachable when the goal was reached (beaten), or at the best dead end
    states: int  # opened-door sets searched
    stuck: str  # "" when beaten, else where the player is stuck

    def to_json(self) -> dict[str, object]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        out["tiles"] = [list(t) for t in self.tiles]
        return out

    @property
    def path_share(self) -> float:
        """Rooms on the solution path / rooms (the fitness of Schrum et al. 2020); 0 when not beaten."""
        return self.rooms_on_path / self.rooms if self.beaten and self.rooms else 0.0

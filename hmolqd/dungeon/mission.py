"""The key/lock mission check: can a player walk from the start to the goal, opening doors in some order?

Rules (the door kinds of `hmolqd.dungeon.layout`; travel follows each link's per-direction kind):

- "open", "soft", "bomb": passable (bombs are always at hand; shutters open once a room is cleared); a stair
  link keeps the kind of its link (`s` links are "open");
- "none": closed (the backward way of a one-way door);
- "key": opening it uses up one small key; keys are picked up in rooms labelled `k`, one per room, and an
  opened door stays open both ways. A door is opened only with a key in hand;
- "boss": needs the boss key, picked up in a room labelled `K` (not used up);
- "item": needs a key item, picked up in a room labelled `I` (not used up);
- "switch": the door labelled `S1` opens once a room labelled `S1` was visited (`S` likewise).

Small keys are the only thing used up, so the order of opening key doors matters (a key spent on a side
room may be missing later). The check is the whole-dungeon player of `hmolqd.dungeon.play` run on the
graph alone (one cell per room; the rules above are defined there once): it searches over the sets of
opened key doors (breadth first, with `max_states` as a bound) and reports the dungeon **beatable** when
some order reaches the goal.
The goal comes last: the walk ends when it enters the goal room, so nothing found there helps to reach it.

`boss_before_goal` says whether every way from the start to the goal passes through the boss room. It
is reported, not required: in the real LoZ2_4 graph the triforce room (32) is also reached past the boss
(29 - 32 is an open door). When the goal cannot be reached, `stuck` says where: the rooms reached at
best, and for each door on their border what it needs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hmolqd.dungeon.layout import Layout
from hmolqd.dungeon.play import FREE_KINDS, play_layout

__all__ = ["FREE_KINDS", "MissionResult", "check_mission"]


@dataclass(frozen=True)
class MissionResult:
    beatable: bool  # some order of opening doors reaches the goal
    boss_before_goal: bool  # every way to the goal passes the boss room (True where the layout has no boss room)
    keys: int  # rooms labelled k
    key_doors: int  # links with a key-locked direction
    keys_used: int  # key doors opened on the way found (beatable), or at the best dead end
    reached: int  # rooms reachable when the goal was reached (beatable), or at the best dead end
    rooms: int
    states: int  # search states visited
    stuck: str  # "" when beatable, else where the player is stuck

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _behind_boss(layout: Layout) -> bool:
    """True when the goal cannot be reached from the start without entering the boss room (or no boss)."""
    if layout.boss is None or layout.goal == layout.boss:
        return True
    adj = layout.neighbours()
    seen, queue = {layout.start}, deque([layout.start])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if v not in seen and v != layout.boss:
                seen.add(v)
                queue.append(v)
    return layout.goal not in seen


def check_mission(layout: Layout, max_states: int = 200_000) -> MissionResult:
    """The mission view of the whole-dungeon player: `hmolqd.dungeon.play` on the graph alone (one cell per
    room, module docstring) -> `MissionResult`."""
    result = play_layout(layout, max_states)
    return MissionResult(
        result.beaten,
        _behind_boss(layout),
        result.keys,
        result.key_doors,
        result.keys_used,
        result.reached,
        result.rooms,
        result.states,
        result.stuck,
    )

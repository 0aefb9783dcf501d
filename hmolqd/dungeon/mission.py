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
room may be missing later). The check searches over the sets of opened key doors (breadth first, with
`max_states` as a bound) and reports the dungeon **beatable** when some order reaches the goal.
The goal comes last: the walk ends when it enters the goal room, so nothing found there helps to reach it.

`boss_before_goal` says whether every way from the start to the goal passes through the boss room. It
is reported, not required: in the real LoZ2_4 graph the triforce room (32) is also reached past the boss
(29 - 32 is an open door). When the goal cannot be reached, `stuck` says where: the rooms reached at
best, and for each door on their border what it needs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hmolqd.dungeon.layout import NO_PASSAGE, Layout, switch_codes

FREE_KINDS: frozenset[str] = frozenset({"open", "soft", "bomb"})


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


def _moves(layout: Layout) -> dict[int, list[tuple[int, str, int]]]:
    """Room -> [(neighbour, door kind of that move, link index)]. A stair link keeps its door kind."""
    out: dict[int, list[tuple[int, str, int]]] = {room.id: [] for room in layout.rooms}
    for index, link in enumerate(layout.links):
        out[link.a].append((link.b, link.kind_ab, index))
        out[link.b].append((link.a, link.kind_ba, index))
    return out


def _closure(layout: Layout, moves: dict[int, list[tuple[int, str, int]]], opened: frozenset[int], labels: dict[int, frozenset[str]]) -> set[int]:
    """Rooms reachable from the start with the key doors `opened` open; items that are not used up apply as found."""
    reached = {layout.start}
    while True:
        size = len(reached)
        carried = frozenset().union(*(labels[r] for r in reached))  # codes of every room visited so far
        switches = switch_codes(carried)
        queue = deque(reached)
        while queue:
            u = queue.popleft()
            for v, kind, index in moves[u]:
                if v in reached:
                    continue
                if (
                    kind in FREE_KINDS
                    or index in opened
                    or (kind == "boss" and "K" in carried)
                    or (kind == "item" and "I" in carried)
                    or (kind == "switch" and bool(switch_codes(layout.links[index].labels) & switches))
                ):
                    reached.add(v)
                    queue.append(v)
        # New rooms may hold a boss key, a key item or a switch that opens more doors: repeat until stable.
        if len(reached) == size:
            return reached


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
    """Search the orders of opening key doors (module docstring) -> `MissionResult`."""
    labels = {room.id: room.labels for room in layout.rooms}
    moves = _moves(layout)
    key_rooms = frozenset(r for r, codes in labels.items() if "k" in codes)
    key_doors = sum(1 for link in layout.links if "key" in (link.kind_ab, link.kind_ba))
    start: frozenset[int] = frozenset()
    seen_states = {start}
    queue = deque([start])
    best: tuple[int, frozenset[int], set[int]] = (-1, start, set())
    while queue:
        opened = queue.popleft()
        reached = _closure(layout, moves, opened, labels)
        if len(reached) > best[0]:
            best = (len(reached), opened, reached)
        if layout.goal in reached:
            return MissionResult(True, _behind_boss(layout), len(key_rooms), key_doors, len(opened), len(reached),
                                 len(layout.rooms), len(seen_states), "")
        in_hand = len(key_rooms & reached) - len(opened)
        if in_hand <= 0:
            continue
        for u in sorted(reached):
            for v, kind, index in moves[u]:
                if kind == "key" and v not in reached and index not in opened:
                    nxt = opened | {index}
                    if nxt not in seen_states:
                        if len(seen_states) >= max_states:
                            return MissionResult(False, _behind_boss(layout), len(key_rooms), key_doors, len(best[1]), best[0],
                                                 len(layout.rooms), len(seen_states), f"search limit of {max_states} states reached")
                        seen_states.add(nxt)
                        queue.append(nxt)
    _, opened, reached = best
    return MissionResult(False, _behind_boss(layout), len(key_rooms), key_doors, len(opened), len(reached),
                         len(layout.rooms), len(seen_states), _stuck(layout, moves, opened, reached, key_rooms))


def _stuck(layout: Layout, moves: dict[int, list[tuple[int, str, int]]], opened: frozenset[int], reached: set[int], key_rooms: frozenset[int]) -> str:
    """Describe the best dead end: rooms reached and what each border door needs."""
    in_hand = len(key_rooms & reached) - len(opened)
    needs = []
    for u in sorted(reached):
        for v, kind, index in moves[u]:
            if v in reached:
                continue
            if kind == "key":
                needs.append(f"{u}->{v} key-locked ({in_hand} key(s) in hand, {len(key_rooms & reached)} picked up, {len(opened)} used)")
            elif kind == "boss":
                needs.append(f"{u}->{v} needs the boss key (room labelled K not reached)")
            elif kind == "item":
                needs.append(f"{u}->{v} needs a key item (room labelled I not reached)")
            elif kind == "switch":
                codes = ",".join(sorted(switch_codes(layout.links[index].labels))) or "S"
                needs.append(f"{u}->{v} switch-locked (switch {codes} not reached)")
            elif kind == NO_PASSAGE:
                needs.append(f"{u}->{v} one-way the other way")
    where = "; ".join(needs) if needs else "no door leads on"
    return f"goal {layout.goal} not reached: at best {len(reached)} of {len(layout.rooms)} rooms ({sorted(reached)[:12]}...); {where}"

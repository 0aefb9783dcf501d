"""The label codes of the VGLC room graphs (legend `zelda.json`, mirrored in `hmolqd.data.graph`), by name.

A room graph writes each label as one letter (or `S`, `S1`, ... for switches): room labels on nodes, door
codes on edges. `Room.labels` and `Link.labels` hold these codes as plain strings, as read from the files;
the members below are those same strings (`StrEnum`), so `RoomLabel.KEY in room.labels` reads what it says.
Small keys, the boss key and the key item share their letter between the room that holds the thing and the
door that needs it: `k`, `K`, `I`.
"""

from __future__ import annotations

from enum import StrEnum


class RoomLabel(StrEnum):
    """What a graph node says of its room."""

    START = "s"
    GOAL = "t"  # the triforce room
    BOSS = "b"
    ENEMIES = "e"
    PUZZLE = "p"
    ITEM = "i"  # an item room (not the key item)
    MINIBOSS = "m"
    KEY = "k"  # one small key
    BOSS_KEY = "K"
    KEY_ITEM = "I"


class DoorCode(StrEnum):
    """What a graph edge says of its door (`SWITCH` is the prefix of `S`, `S1`, ...)."""

    KEY_LOCKED = "k"  # uses up one small key
    BOSS_LOCKED = "K"
    ITEM_LOCKED = "I"  # needs the key item
    SWITCH = "S"
    BOMBABLE = "b"
    SOFT_LOCKED = "l"  # shutters: open once the room is cleared
    STAIR = "s"  # no door: an underground stair passage


# The door codes that need something picked up in a room labelled with the same letter (plain strings, as in
# `Link.labels`).
LOCK_CODES: frozenset[str] = frozenset(
    code.value for code in (DoorCode.KEY_LOCKED, DoorCode.BOSS_LOCKED, DoorCode.ITEM_LOCKED)
)

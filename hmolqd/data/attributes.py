"""Room conditions: door sides, stairs and room attributes, each measured on the room itself.

A condition is a `(B, K)` long tensor of tokens ABSENT=0 / PRESENT=1 / UNKNOWN=2 (UNKNOWN = "left open",
and the dropped condition of classifier-free guidance, Ho & Salimans 2022). Column order: the 4 door sides
(`tiles.SIDES`), then has-stairs when `cond_stairs`, then ATTRIBUTES when `cond_attributes`:

  monsters     an M tile
  water        an element tile P, O or I (water or lava)
  playable     `playability.playable_mask`
  symmetric    the interior equals its mirror about either axis (`tiles.mirror_axes`)
  mirror_rows  the interior equals its top <-> bottom mirror (text grid rows)
  mirror_cols  the interior equals its left <-> right mirror
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hmolqd.data.playability import playable_mask
from hmolqd.data.tiles import ELEMENT, ELEMENT_BLOCK, ELEMENT_FLOOR, MONSTER, SIDES, door_sides, has_stairs, mirror_axes

ABSENT, PRESENT, UNKNOWN = 0, 1, 2
COND_VALUES = 3  # token values per condition column
ATTRIBUTES: tuple[str, ...] = ("monsters", "water", "playable", "symmetric", "mirror_rows", "mirror_cols")
ASK_WORDS: dict[str, int] = {"yes": PRESENT, "no": ABSENT, "open": UNKNOWN}


def has_monsters(rooms: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)` -> `(N,)` bool: the room holds a monster tile M."""
    return (rooms == MONSTER).flatten(1).any(1)


def has_water(rooms: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)` -> `(N,)` bool: the room holds an element tile (water or lava: P, O or I)."""
    return ((rooms == ELEMENT) | (rooms == ELEMENT_FLOOR) | (rooms == ELEMENT_BLOCK)).flatten(1).any(1)


def room_attributes(rooms: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)` tile indices -> `(N, 6)` bool in ATTRIBUTES order, measured on each room."""
    rooms = rooms.long().cpu()
    rows, cols = mirror_axes(rooms)
    return torch.stack([has_monsters(rooms), has_water(rooms), playable_mask(rooms), rows | cols, rows, cols], dim=1)


def cond_size(cond_stairs: bool, cond_attributes: bool) -> int:
    """K: the 4 door sides, + has-stairs, + the ATTRIBUTES."""
    return len(SIDES) + int(cond_stairs) + (len(ATTRIBUTES) if cond_attributes else 0)


def _tokens(values: torch.Tensor) -> torch.Tensor:
    """bool -> ABSENT / PRESENT; an integer tensor is taken as tokens already (UNKNOWN allowed)."""
    values = values.cpu()
    return torch.where(values, PRESENT, ABSENT) if values.dtype == torch.bool else values.long()


def condition_tokens(
    doors: torch.Tensor | None,
    stairs: torch.Tensor | None,
    attributes: torch.Tensor | None = None,
    *,
    n: int,
    cond_stairs: bool,
    cond_attributes: bool = False,
) -> torch.Tensor:
    """`(n, K)` long tokens on the CPU; None leaves a whole group UNKNOWN. doors `(n, 4)`, stairs `(n,)`,
    attributes `(n, 6)` in ATTRIBUTES order: bool, or integer tokens (so single entries can be left open)."""
    tokens = torch.full((n, cond_size(cond_stairs, cond_attributes)), UNKNOWN, dtype=torch.long)
    if doors is not None:
        if tuple(doors.shape) != (n, len(SIDES)):
            raise ValueError(
                f"condition_tokens: doors must be ({n}, {len(SIDES)}) (sides {SIDES}), got {tuple(doors.shape)}"
            )
        tokens[:, : len(SIDES)] = _tokens(doors)
    if stairs is not None:
        if not cond_stairs:
            raise ValueError(
                "condition_tokens: stairs given but ModelConfig.cond_stairs is False (the model has no stairs input)"
            )
        if tuple(stairs.shape) != (n,):
            raise ValueError(f"condition_tokens: stairs must be ({n},), got {tuple(stairs.shape)}")
        tokens[:, len(SIDES)] = _tokens(stairs)
    if attributes is not None:
        if not cond_attributes:
            raise ValueError(
                "condition_tokens: attributes given but ModelConfig.cond_attributes is False "
                "(the model has no attribute input)"
            )
        if tuple(attributes.shape) != (n, len(ATTRIBUTES)):
            raise ValueError(
                f"condition_tokens: attributes must be ({n}, {len(ATTRIBUTES)}) ({', '.join(ATTRIBUTES)}), "
                f"got {tuple(attributes.shape)}"
            )
        tokens[:, -len(ATTRIBUTES) :] = _tokens(attributes)
    if bool(((tokens < ABSENT) | (tokens > UNKNOWN)).any()):
        raise ValueError(
            f"condition_tokens: tokens must be ABSENT=0, PRESENT=1 or UNKNOWN=2, got {tokens.unique().tolist()}"
        )
    return tokens


def room_condition(rooms: torch.Tensor, cond_stairs: bool, cond_attributes: bool) -> torch.Tensor:
    """The condition tokens `(N, K)` that describe real rooms `(N, 16, 11)`, every group measured."""
    rooms = rooms.long().cpu()
    return condition_tokens(
        door_sides(rooms),
        has_stairs(rooms) if cond_stairs else None,
        room_attributes(rooms) if cond_attributes else None,
        n=rooms.shape[0],
        cond_stairs=cond_stairs,
        cond_attributes=cond_attributes,
    )


def attribute_request(n: int, asked: Mapping[str, object] | None, defaults: Mapping[str, str]) -> torch.Tensor:
    """`(n, 6)` attribute tokens: `asked` {name: bool, "yes"/"no"/"open", or an `(n,)` bool tensor} wins,
    else `defaults` {name: "yes"/"no"/"open"}, else "open". Unknown names are an error that lists the known ones."""
    out = torch.full((n, len(ATTRIBUTES)), UNKNOWN, dtype=torch.long)
    merged = {**defaults, **(asked or {})}
    for name, value in merged.items():
        if name not in ATTRIBUTES:
            raise ValueError(f"unknown room attribute {name!r}; known: {', '.join(ATTRIBUTES)}")
        col = ATTRIBUTES.index(name)
        if isinstance(value, str):
            if value not in ASK_WORDS:
                raise ValueError(
                    f"room attribute {name!r} = {value!r}: must be one of {', '.join(ASK_WORDS)} or a bool"
                )
            out[:, col] = ASK_WORDS[value]
        elif isinstance(value, bool):
            out[:, col] = PRESENT if value else ABSENT
        else:
            value = torch.as_tensor(value)
            if value.dtype != torch.bool or tuple(value.shape) != (n,):
                raise ValueError(
                    f"room attribute {name!r}: a tensor must be ({n},) bool, got {value.dtype} {tuple(value.shape)}"
                )
            out[:, col] = _tokens(value)
    return out


def condition_groups(cond_stairs: bool, cond_attributes: bool) -> list[list[int]]:
    """Column groups dropped together in training: the 4 doors, stairs, then each attribute on its own."""
    groups = [list(range(len(SIDES)))]
    col = len(SIDES)
    if cond_stairs:
        groups.append([col])
        col += 1
    if cond_attributes:
        groups += [[col + i] for i in range(len(ATTRIBUTES))]
    return groups


def drop_condition(cond: torch.Tensor, drop_prob: float, groups: list[list[int]]) -> torch.Tensor:
    """Classifier-free guidance dropout (Ho & Salimans 2022) on `(B, K)` tokens, global RNG: the whole row
    becomes UNKNOWN with prob `drop_prob`, and when there is more than one group each group is dropped
    independently with the same prob, so partial queries (doors given, the rest open) are trained on."""
    if not 0 <= drop_prob < 1:
        raise ValueError(f"drop_condition: drop_prob must be in [0, 1) (config key cond_drop_prob), got {drop_prob}")
    if drop_prob == 0:
        return cond
    B, K = cond.shape
    # (B, K): the coin that drops a whole row, spread over its columns
    drop = (torch.rand(B, 1, device=cond.device) < drop_prob).expand(B, K).clone()
    if len(groups) > 1:
        drop_group = torch.rand(B, len(groups), device=cond.device) < drop_prob  # (B, G) a coin per group
        for i, cols in enumerate(groups):
            # a run of columns (every group here) as a slice: a list index is a host-to-GPU copy, a sync per group
            where = slice(cols[0], cols[-1] + 1) if cols == list(range(cols[0], cols[-1] + 1)) else cols
            drop[:, where] |= drop_group[:, i : i + 1]
    return torch.where(drop, UNKNOWN, cond)

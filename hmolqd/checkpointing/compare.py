"""Tensor-by-tensor comparison of nested training states (checkpoints, state_dicts), naming each difference.

Used by the checkpoint self-check (`hmolqd.training.selfcheck`) and by the tests: floats within `atol` (0 = exact),
everything else exactly; NaN in the same place counts as equal (the same run logs the same NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Comparison:
    tensors: int = 0  # tensors compared
    values: int = 0  # plain values compared
    max_abs_diff: float = 0.0  # largest difference between float values (0.0 = identical)
    diffs: list[str] = field(default_factory=list)  # what differs, with its key path


def compare_states(
    a: Any, b: Any, where: str = "state", atol: float = 0.0, out: Comparison | None = None
) -> Comparison:
    """Walk two nested states; tensors by dtype, shape and every element (floats within `atol`, else exact)."""
    out = out if out is not None else Comparison()
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        out.tensors += 1
        if (
            not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor))
            or a.dtype != b.dtype
            or a.shape != b.shape
        ):
            out.diffs.append(f"{where}: {_kind(a)} != {_kind(b)}")
            return out
        x, y = a.detach().cpu(), b.detach().cpu()
        if x.dtype.is_floating_point and x.numel():
            gap = _max_gap(x, y)
            out.max_abs_diff = max(out.max_abs_diff, gap)
            if gap > atol:
                out.diffs.append(f"{where}: max |difference| {gap:.3g}")
        elif not torch.equal(x, y):
            out.diffs.append(f"{where}: {int((x != y).sum())} of {x.numel()} elements differ")
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.diffs.append(
                f"{where}: keys differ: only in first {sorted(map(str, set(a) - set(b)))}, "
                f"only in second {sorted(map(str, set(b) - set(a)))}"
            )
        for key in a.keys() & b.keys():
            compare_states(a[key], b[key], f"{where}[{key!r}]", atol, out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.diffs.append(f"{where}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            compare_states(x, y, f"{where}[{i}]", atol, out)
    else:
        out.values += 1
        if type(a) is float and type(b) is float and a == a and b == b:
            out.max_abs_diff = max(out.max_abs_diff, abs(a - b))
            if abs(a - b) > atol:
                out.diffs.append(f"{where}: {a!r} != {b!r}")
        elif a != b and not (a != a and b != b):  # NaN equals NaN here: the same run logs the same NaN
            out.diffs.append(f"{where}: {a!r} != {b!r}")
    return out


def _max_gap(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest |x - y| of two float tensors; NaN (or inf) in the same places counts as equal, elsewhere as inf."""
    if torch.equal(x, y):
        return 0.0
    if not torch.equal(x.isnan(), y.isnan()):
        return float("inf")
    same = (x == y) | x.isnan()  # covers equal infinities, whose difference would be NaN
    gap = torch.where(same, 0.0, (x.double() - y.double()).abs())
    return float(gap.max())


def _kind(x: Any) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def assert_same(a: Any, b: Any, what: str, atol: float = 0.0) -> Comparison:
    """compare_states, raising AssertionError with the first differences (and how many there are)."""
    result = compare_states(a, b, what, atol)
    if result.diffs:
        shown = "; ".join(result.diffs[:4]) + (
            f"; ... ({len(result.diffs)} differences)" if len(result.diffs) > 4 else ""
        )
        raise AssertionError(f"{what} differs: {shown}")
    return result

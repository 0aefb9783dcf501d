"""Compare two `python -m hmolqd evaluate` reports number by number, leaving out what may differ between two runs
of the same model and seed: wall-clock timings and the paths of the files written.

Usage: python bench/compare_reports.py BEFORE.json AFTER.json
Prints every metric that differs (with both values) and exits 1 if any does, else prints the count compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Keys whose values are times or output paths: they differ between runs that compute the same numbers.
VOLATILE = {"timing", "seconds", "files", "png", "json"}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value} of a report, without the volatile keys."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in VOLATILE:
                out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {f"{prefix}{i}": item for i, item in enumerate(value)}
    return {prefix.rstrip("."): value}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = (flatten(json.loads(Path(p).read_text(encoding="utf-8"))) for p in argv)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k, "<absent>") != after.get(k, "<absent>"))
    for key in differ:
        print(f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}")
    if differ:
        print(f"{len(differ)} of {len(before.keys() | after.keys())} values differ")
        return 1
    print(f"all {len(before)} values are the same (timings and file paths left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Regenerate hmolqd/data/vglc_manifest.json from a verified local copy of the VGLC Zelda folder.

Usage: python bench/build_vglc_manifest.py [FOLDER]   (default: ../shared/data/vglc-zelda)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hmolqd.data.fetch import MANIFEST_PATH, build_manifest

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else REPO.parent / "shared" / "data" / "vglc-zelda"
    manifest = build_manifest(folder)
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"{MANIFEST_PATH}: {len(manifest['files'])} files from {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

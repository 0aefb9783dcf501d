"""The README a newcomer reads first: short, its picture and commands up top, every moved section a docs/ page that
exists, and examples that write under runs/ (git-ignored), each into its own folder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PAGES = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md")}


def test_readme_fits_on_a_few_screens_with_its_picture_and_commands_first() -> None:
    lines = README.splitlines()
    assert len(lines) <= 200
    first = "\n".join(lines[:40])
    assert re.search(r"!\[[^\]]*\]\(docs/[\w.]+\.png\)", first), "an image in the first 40 lines"
    assert "python -m hmolqd fetch-data data/vglc-zelda && python -m hmolqd train --preset cpu" in first
    assert "<!-- test-command -->" in first and "<!-- /test-command -->" in first
    assert "## Results" in README  # the small results table, kept under this heading


def test_every_local_link_and_picture_exists() -> None:
    for name, text in [("README.md", README), *((f"docs/{n}", t) for n, t in PAGES.items())]:
        folder = REPO if name == "README.md" else REPO / "docs"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")):
                assert (folder / target).exists(), f"{name} links {target}, which does not exist"


def test_the_moved_sections_are_linked_from_the_readme() -> None:
    for page in ("configuration", "checkpoints", "dungeons", "illumination", "benchmarks", "kaggle"):
        assert f"(docs/{page}.md)" in README and f"{page}.md" in PAGES


def test_examples_write_under_runs_each_into_its_own_place() -> None:
    for name, text in [("README.md", README), *PAGES.items()]:
        outs = re.findall(r"--(?:out|render) (\S+)", "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)))
        assert all(out.startswith("runs/") for out in outs), (name, outs)
        assert len(outs) == len(set(outs)), f"{name}: two examples write to the same place: {outs}"
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/x"], cwd=REPO, check=False)
    assert ignored.returncode == 0, "runs/ must be git-ignored"


def test_no_internal_issue_numbers_or_unmeasured_rows() -> None:
    for name, text in [("README.md", README), *PAGES.items()]:
        assert not re.search(r"\bissue \d+|the issue's|not measured yet|not yet run on a GPU", text), name

"""Issue 17, item 5: a Kaggle run in CI, following docs/kaggle.md on a fake Kaggle tree.

The tree is built in tmp_path and named by HMOLQD_KAGGLE_ROOT (read by the config, the data search, the resume
search and both notebooks' setup cells). Its `input/` holds, read-only, the corpus as a data set and this repository
itself (every tracked file: tests and the v0.1.0 fixture checkpoints included), as the README tells users to attach
them; `working/` is the kernel's cwd. Root ignores file permissions, so every file under `input/` is also hashed
before and after each session: nothing there may change, appear or disappear.

The kernel is started so that it cannot import the `hmolqd` installed in the test's environment (`python -S`: no
.pth file, so no editable install; site-packages come from PYTHONPATH): the notebooks' first cell must find the
package under input/ and import it in place, as on Kaggle. PYTHONDONTWRITEBYTECODE stands in for the read-only
input (where root could write __pycache__ into it, Kaggle cannot).

Session 1 runs train_h_molqd_kaggle.ipynb (smoke preset, shrunk) from scratch, then again in the same working
folder; session 2 attaches session 1's working folder as an input, starts with an empty working folder and more
epochs, then runs test_checkpoint_resume.ipynb with that input still attached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_helpers import execute, inject, output_text, read, text_of

from hmolqd.checkpointing.fileformat import LATEST, try_load_checkpoint
from hmolqd.checkpointing.lock import RUN_INFO_NAME
from hmolqd.checkpointing.resume import NO_CHECKPOINT
from hmolqd.config import KAGGLE_ROOT_ENV
from hmolqd.training.outputs import FINAL_MODEL, ZIP_NAME

REPO = Path(__file__).resolve().parents[1]
TRAIN_NB = REPO / "train_h_molqd_kaggle.ipynb"
CHECK_NB = REPO / "test_checkpoint_resume.ipynb"
KERNEL = "hmolqd-kaggle"  # the kernelspec written by _kaggle_kernel
SLUG = "h-molqd-kaggle-version-1"  # where Kaggle mounts a previous notebook version's output: input/<notebook slug>/
BEST = "checkpoint_best.pt"
LOCK = "hmolqd.lock"
# The smoke preset (hmolqd/presets/smoke.json: its model) shrunk to the fewest steps that still run every stage,
# validate (the last epoch of a stage always does: checkpoint_best.pt) and sample: 1212 training rooms / 256 = 5 steps
# an epoch.
SHRINK = {
    "vqvae_epochs": 1,
    "num_epochs": 1,
    "batch_size": 256,
    "warmup_steps": 2,
    "eval_samples": 8,
    "sample_steps": 2,
}


# ---------------------------------------------------------------- the fake Kaggle tree


def _tracked_files() -> list[str]:
    """This repository's tracked files (as they are in the working tree), as README tells users to upload it."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def _copy_repo(dest: Path) -> None:
    for name in _tracked_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)  # copies, never links: the test may not reach the repository itself


def _read_only(folder: Path) -> None:
    """chmod -R a-w (what Kaggle's input is; root still can write, hence the hashes)."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def _snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256 of its bytes, or "dir"} of everything under folder."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _assert_unchanged(before: dict[str, str], after: dict[str, str], what: str) -> None:
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    new, gone = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    assert before == after, f"{what} changed: changed {changed}, new {new}, gone {gone}"


def _kaggle_tree(root: Path, vglc_dir: Path, extra_inputs: dict[str, Path] | None = None) -> Path:
    """root/input/{vglc-zelda, hmolqd, *extra_inputs} (read-only copies) and an empty root/working; returns input/."""
    inp = root / "input"
    shutil.copytree(vglc_dir, inp / "vglc-zelda")  # symlinks=False: the files themselves
    _copy_repo(inp / "hmolqd")
    for name, src in (extra_inputs or {}).items():
        shutil.copytree(src, inp / name)
    _read_only(inp)
    (root / "working").mkdir()
    return inp


def _kaggle_kernel(jupyter_dir: Path, monkeypatch: pytest.MonkeyPatch, root: Path) -> str:
    """A kernelspec whose python cannot see the installed hmolqd; the env of the kernels started next."""
    # sys.path but the repository (a path-style editable install, pytest's rootdir) and tests/ (pytest's prepend).
    hidden = {REPO, Path(__file__).parent}
    paths = [p for p in sys.path if p and Path(p).is_dir() and Path(p).resolve() not in hidden]
    spec = {
        "argv": [sys.executable, "-S", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hmolqd on a fake Kaggle",
        "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": "1"},
    }
    (jupyter_dir / "kernels" / KERNEL).mkdir(parents=True, exist_ok=True)
    (jupyter_dir / "kernels" / KERNEL / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    monkeypatch.setenv(KAGGLE_ROOT_ENV, str(root))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return KERNEL


def _run(path: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch, **params: Any) -> nbformat.NotebookNode:
    return execute(inject(read(path), **params), cwd, monkeypatch, kernel_name=KERNEL)


# ---------------------------------------------------------------- what the notebook said and wrote


def _cell(nb: nbformat.NotebookNode, heading: str) -> str:
    """The output of the code cell whose source starts with `heading` (e.g. "# 5. Train")."""
    return next(output_text(c) for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(heading))


def _epochs(outputs: Path) -> list[tuple[str, int]]:
    return [(r["stage"], r["epoch"]) for r in json.loads((outputs / "training_history.json").read_text())]


def _history(outputs: Path) -> list[dict[str, Any]]:
    return json.loads((outputs / "training_history.json").read_text())


def _assert_imported_from(text: str, inp: Path) -> None:
    found = re.search(r"^hmolqd from (\S+)", text, flags=re.MULTILINE)
    assert found and Path(found.group(1)) == inp / "hmolqd" / "hmolqd" / "__init__.py", found and found.group(0)


def _resume_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Resuming from", NO_CHECKPOINT))]


def _repo_checkpoints_named(text: str, inp: Path) -> list[str]:
    """The .pt files under the attached repository (its test fixtures) that `text` names: none may be a candidate."""
    return re.findall(re.escape(str(inp / "hmolqd")) + r"/\S*\.pt", text)


def _saved_state(working: Path) -> dict[str, str]:
    """The hashes of what a finished training's re-run must leave as it is: the checkpoints and the final outputs."""
    kept = {f"outputs/{name}" for name in (FINAL_MODEL, "config.json", "training_history.json")}
    state = {k: v for k, v in _snapshot(working).items() if k.startswith("checkpoints/") or k in kept}
    # The zip is rebuilt by the dungeon cell (it adds dungeon_generated.*): its copies of those files are compared.
    with zipfile.ZipFile(working / "outputs" / ZIP_NAME) as zf:
        names = [n for n in zf.namelist() if n in kept or n.startswith("checkpoints/")]
        state |= {f"zip:{n}": hashlib.sha256(zf.read(n)).hexdigest() for n in names}
    return state


# ---------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.real_data
def test_kaggle_run_all_resume_and_second_session(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ---- (a) session 1, first "Run all": trains from scratch, never from the repository's fixture checkpoint
    root1 = tmp_path / "session1"
    inp1 = _kaggle_tree(root1, vglc_dir)
    work1 = root1 / "working"
    input_before = _snapshot(inp1)
    assert any(k.endswith(f"fixtures/v0_1_0/{LATEST}") for k in input_before)  # the file the first run adopted
    _kaggle_kernel(tmp_path / "jupyter", monkeypatch, root1)

    # any failing cell raises here
    first = _run(TRAIN_NB, work1, monkeypatch, PRESET="smoke", CONFIG_OVERRIDES=SHRINK, ILLUMINATE_EVALUATIONS=2)
    text = text_of(first)
    _assert_imported_from(text, inp1)
    assert "on Kaggle: yes" in text
    status, trained = _cell(first, "# 4. Resume status"), _cell(first, "# 5. Train")
    for said in (status, trained):
        assert [line.startswith(NO_CHECKPOINT) for line in _resume_lines(said)] == [True], said[:3000]
        assert not _repo_checkpoints_named(said, inp1), f"the resume search looked into the repository:\n{said[:3000]}"
    assert "started from scratch" in trained and "training finished" in trained
    ckpt1, out1 = work1 / "checkpoints", work1 / "outputs"
    assert _epochs(out1) == [("vqvae", 1), ("diffusion", 1)]
    for path in (ckpt1 / LATEST, ckpt1 / BEST, ckpt1 / RUN_INFO_NAME, out1 / FINAL_MODEL, out1 / ZIP_NAME):
        assert path.is_file(), f"{path} missing; working holds {sorted(_snapshot(work1))}"
    assert sorted(p.name for p in root1.iterdir()) == ["input", "working"], "the run wrote outside the working folder"
    _assert_unchanged(input_before, _snapshot(inp1), "input/ after the first run")

    # ---- (b) session 1, "Run all" again: resumes its own checkpoint, training already finished, nothing trained twice
    saved_1, history_1 = _saved_state(work1), _history(out1)
    again = _run(TRAIN_NB, work1, monkeypatch, PRESET="smoke", CONFIG_OVERRIDES=SHRINK, ILLUMINATE_EVALUATIONS=2)
    trained = _cell(again, "# 5. Train")
    resumed = _resume_lines(trained)
    assert resumed and resumed[0].startswith(f"Resuming from {ckpt1 / LATEST} "), trained[:2000]
    assert "training already finished" in trained and str(inp1) not in "\n".join(resumed), trained[:2000]
    assert _history(out1) == history_1, "the re-run retrained or rewrote finished epochs"
    _assert_unchanged(saved_1, _saved_state(work1), "session 1's checkpoints, model, history, config after the re-run")
    _assert_unchanged(input_before, _snapshot(inp1), "input/ after the re-run")

    # ---- (c) session 2: session 1's working folder attached as input/<slug>, an empty working folder, one more epoch
    root2 = tmp_path / "session2"
    inp2 = _kaggle_tree(root2, vglc_dir, {SLUG: work1})
    work2, prev = root2 / "working", inp2 / SLUG
    input_before = _snapshot(inp2)
    _kaggle_kernel(tmp_path / "jupyter", monkeypatch, root2)
    more = {**SHRINK, "num_epochs": 2}
    second = _run(TRAIN_NB, work2, monkeypatch, PRESET="smoke", CONFIG_OVERRIDES=more, ILLUMINATE_EVALUATIONS=2)
    text = text_of(second)
    _assert_imported_from(text, inp2)
    status, trained = _cell(second, "# 4. Resume status"), _cell(second, "# 5. Train")
    for said in (status, trained):
        resumed = _resume_lines(said)
        assert resumed and resumed[0].startswith("Resuming from") and str(prev) in resumed[0], (
            f"session 2 did not resume from the previous version's output {prev}:\n{said[:3000]}"
        )
        assert not _repo_checkpoints_named(said, inp2), f"the resume search looked into the repository:\n{said[:3000]}"
    assert "stage diffusion, epoch 1" in _resume_lines(trained)[0], trained[:2000]
    # The same lineage continues: session 2's checkpoints carry session 1's run id.
    run_1, _ = try_load_checkpoint(ckpt1 / LATEST)
    run_2, _ = try_load_checkpoint(work2 / "checkpoints" / LATEST)
    assert run_1 is not None and run_2 is not None and run_2["run_id"] == run_1["run_id"], "session 2 is another run"
    ckpt2, out2 = work2 / "checkpoints", work2 / "outputs"
    assert _epochs(out2) == [("vqvae", 1), ("diffusion", 1), ("diffusion", 2)], "session 2 retrained or skipped epochs"
    assert _history(out2)[:2] == history_1, "the epochs of session 1 are kept as they were, not retrained"
    assert (ckpt2 / BEST).is_file() and (ckpt2 / LATEST).is_file(), sorted(_snapshot(work2))
    with zipfile.ZipFile(out2 / ZIP_NAME) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert len(names) == len(set(names)), f"an entry stored twice: {sorted(names)}"
        assert {f"checkpoints/{BEST}", f"checkpoints/{LATEST}"} <= set(names), sorted(names)
        assert not [n for n in names if n.endswith(LOCK)], f"the zip holds the lock: {sorted(names)}"
        assert zf.read(f"checkpoints/{LATEST}") == (ckpt2 / LATEST).read_bytes()
        assert zf.read(f"checkpoints/{BEST}") == (ckpt2 / BEST).read_bytes()
        zf.extract(f"checkpoints/{BEST}", tmp_path / "unzipped")
    best, reason = try_load_checkpoint(tmp_path / "unzipped" / "checkpoints" / BEST)
    assert best is not None, f"the zip's {BEST} does not load: {reason}"
    _assert_unchanged(input_before, _snapshot(inp2), "input/ (the previous version's output included) after session 2")

    # ---- (d) the self-check notebook in session 2's tree, the previous output still attached: every check passes
    saved_2 = _snapshot(work2)
    check = _run(CHECK_NB, work2, monkeypatch)  # DATA_DIR None: found under input; WORKDIR None: a temporary folder
    text = text_of(check)
    _assert_imported_from(text, inp2)
    assert "all 7 checks passed" in text and "FAIL" not in text, text
    assert "interrupted training = uninterrupted" in text
    assert str(prev) not in text, f"the self-check looked under input/:\n{text}"
    _assert_unchanged(saved_2, _snapshot(work2), "session 2's working folder after the self-check")
    _assert_unchanged(input_before, _snapshot(inp2), "input/ after the self-check")

"""bench/study.py, the fidelity-novelty study harness, on tiny settings: a SIGKILL mid-training and a re-run give
every point's result, and a reused tokenizer (vqvae_from) is the VQ-VAE the point samples with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hmolqd.checkpointing.export import load_model

STUDY = Path(__file__).resolve().parents[1] / "bench" / "study.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_plan(path: Path, plan: dict) -> Path:
    path.write_text(json.dumps(plan))
    return path


def study(plan: Path, work: Path, out: Path, vglc_dir: Path) -> list[str]:
    return [sys.executable, str(STUDY), "--plan", str(plan), "--work", str(work), "--out", str(out),
            "--data", str(vglc_dir), "--samples", "8", "--jobs", "1"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.real_data
def test_study_resumes_after_a_kill_and_reuses_a_tokenizer(vglc_dir: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out" / "study"
    points = [
        {"name": "tiny", "set": {"num_epochs": 40, "checkpoint_every": 1, "sample_every": 0}},
        {"name": "tiny_hot", "model_of": "tiny", "sample": {"temperature": 1.5}},
    ]
    plan = write_plan(tmp_path / "plan.json", {"preset": "smoke", "points": points})
    proc = subprocess.Popen(study(plan, work, out, vglc_dir), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = work / "tiny" / "seed0" / "ckpt" / "checkpoint_latest.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be killed: give the point more epochs"
    os.killpg(proc.pid, signal.SIGKILL)  # the harness and its training
    proc.wait()
    assert not (work / "tiny" / "seed0" / "result.json").exists()

    done = subprocess.run(study(plan, work, out, vglc_dir), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (work / "tiny" / "seed0" / "train.log").read_text()
    assert "Resum" in log  # the second call continued the killed training from its checkpoint
    assert len(json.loads((work / "tiny" / "seed0" / "train_calls.json").read_text())) == 1  # the killed call: lost
    table = out.with_suffix(".md").read_text()
    assert "| tiny | 0 |" in table and "| tiny_hot | 0 |" in table and out.with_suffix(".png").stat().st_size > 0
    rows = {r["name"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["tiny_hot"]["sample"] == {"temperature": 1.5}
    for name in rows:
        report = json.loads((work / name / "seed0" / "result.json").read_text())
        assert report["settings"]["n"] == 8 and "interior_distance" in report["model"] and report["train_seconds"] > 0
    hot = json.loads((work / "tiny_hot" / "seed0" / "result.json").read_text())
    assert hot["settings"]["temperature"] == 1.5

    # A second plan reuses the first point's VQ-VAE: no VQ-VAE epochs, the same tokenizer weights.
    tokenizer = work / "tiny" / "seed0" / "out" / "model_final.pt"
    reuse = write_plan(
        tmp_path / "reuse.json",
        {"preset": "smoke", "tokenizer": str(tokenizer), "points": [{"name": "reuse", "set": {"num_epochs": 1}}]},
    )
    again = subprocess.run(study(reuse, work, out, vglc_dir), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"VQ-VAE from {tokenizer} (0 more VQ-VAE epochs)" in (work / "reuse" / "seed0" / "train.log").read_text()
    first, second = load_model(tokenizer).vqvae.state_dict(), load_model(work / "reuse/seed0/out/model_final.pt")
    assert all(torch.equal(v, second.vqvae.state_dict()[k]) for k, v in first.items())


def test_study_plan_errors_name_the_point(tmp_path: Path) -> None:
    sys.path.insert(0, str(STUDY.parent))
    try:
        import study as harness
    finally:
        sys.path.remove(str(STUDY.parent))
    bad = {
        "dup": {"points": [{"name": "a"}, {"name": "a"}]},
        "key": {"points": [{"name": "a", "sets": {}}]},
        "of": {"points": [{"name": "a", "model_of": "b"}]},
        "sample": {"points": [{"name": "a"}, {"name": "b", "model_of": "a", "sample": {"temp": 1}}]},
    }
    messages = {}
    for name, plan in bad.items():
        with pytest.raises(harness.PlanError) as err:
            harness.load_plan(write_plan(tmp_path / f"{name}.json", plan))
        messages[name] = str(err.value)
    assert "distinct names" in messages["dup"] and "unknown key(s) ['sets']" in messages["key"]
    assert "model_of 'b' is no point's name" in messages["of"] and "sample keys ['temp']" in messages["sample"]

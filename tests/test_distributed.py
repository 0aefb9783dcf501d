"""DDP is optional, not a fork: the same `train` under `torchrun` with 2 CPU processes (gloo backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_helpers import TINY_MODEL

from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.fileformat import load_checkpoint
from hmolqd.sampling.generate import generate

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.real_data]

TINY = {
    "door_augment": 0,  # 1212 rooms per epoch: the step counts below
    **TINY_MODEL,
    "vqvae_epochs": 1,
    "num_epochs": 2,
    "batch_size": 128,
    "warmup_steps": 2,
    "log_every": 3,
    "sample_every": 0,
    "sample_steps": 4,
}


@pytest.mark.parametrize("checkpoint_async", [False, True], ids=["sync", "async"])
def test_torchrun_two_cpu_processes(vglc_dir: Path, tmp_path: Path, checkpoint_async: bool) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                **TINY,
                "data_dir": str(vglc_dir),
                "checkpoint_dir": str(tmp_path / "ck"),
                "output_dir": str(tmp_path / "out"),
                "checkpoint_async": checkpoint_async,
                "checkpoint_every": 1,
            }
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hmolqd",
        "train",
        "--config",
        str(cfg),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only the main rank prints and writes: one "starting from scratch" line, one set of files.
    assert proc.stdout.count("starting from scratch") == 1
    assert "world size 2" in proc.stdout
    latest = load_checkpoint(tmp_path / "ck" / "checkpoint_latest.pt")
    # 1212 training rooms (with mirrors) / 2 ranks / 128 per batch -> 5 steps per epoch.
    assert latest["global_step"] == 5 * (1 + 2)
    assert [r["epoch"] for r in latest["history"] if r["stage"] == "diffusion"] == [1, 2]
    assert not any(k.startswith("module.") for k in latest["models"]["vqvae"])  # DDP unwrapped before state_dict
    # Rank 0 alone locked the directory, chose the run and wrote: one run id, files complete, no temp file,
    # lock released.
    run_id = json.loads((tmp_path / "ck" / "run.json").read_text())["run_id"]
    names = {p.name for p in (tmp_path / "ck").iterdir()}
    assert names == {
        "run.json",
        "checkpoint_latest.pt",
        "checkpoint_best.pt",
        "checkpoint_vqvae_best.pt",
        "checkpoint_vqvae_epoch_1.pt",
        "checkpoint_epoch_1.pt",
        "checkpoint_epoch_2.pt",
    }
    assert all(load_checkpoint(tmp_path / "ck" / n)["run_id"] == run_id for n in names if n.endswith(".pt"))
    assert (tmp_path / "ck" / "checkpoint_latest.pt").samefile(tmp_path / "ck" / "checkpoint_epoch_2.pt")
    assert proc.stdout.count("checkpointing: ") == 1 and ("in the background" in proc.stdout) == checkpoint_async
    assert generate(load_model(tmp_path / "out" / "model_final.pt"), 2, steps=2).shape == (2, 16, 11)

"""The benchmark suite's plumbing (bench/run.py, bench/gpu_check.py): files and keys, never timings."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
HOST_KEYS = {
    "cpu_model",
    "cpu_cores",
    "torch_threads",
    "torch_version",
    "device",
    "date",
    "quick",
    "machine_busy",
    "sizes",
}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """bench/run.py and bench/gpu_check.py as modules (bench/ is not a package: its scripts import hbench beside
    them)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return {name: importlib.import_module(name) for name in ("run", "gpu_check")}


def test_run_arguments(bench: dict[str, ModuleType]) -> None:
    parse = bench["run"].parse_args
    assert parse(["--quick"]).sizes == "quick" and parse([]).sizes == "full"
    args = parse(["--sizes", "tiny", "--sections", "training,compile", "--busy"])
    assert (args.sizes, args.sections, args.busy) == ("tiny", ("training", "compile"), True)
    for bad in (["--quick", "--sizes", "tiny"], ["--sections", "training,speed"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            parse(bad)


def test_gpu_check_arguments(bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gpu_check = bench["gpu_check"]
    monkeypatch.setenv("OUT", str(tmp_path))
    args = gpu_check.parse_args(["--skip", "suite,resume"])
    assert args.out == tmp_path and args.skip == ("suite", "resume") and args.preset == "notebook"
    assert gpu_check.parse_args(["--cpu-plumbing"]).preset == "smoke"
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--skip", "everything"])


def test_gpu_check_refuses_cleanly_without_cuda(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench["gpu_check"].main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing may run (or be written) without a GPU"


@pytest.mark.slow
def test_suite_writes_json_and_markdown(bench: dict[str, ModuleType], vglc_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [
        "--preset",
        "smoke",
        "--sizes",
        "tiny",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--data",
        str(vglc_dir),
        "--busy",
        "--workdir",
        str(tmp_path),
    ]
    assert bench["run"].main(argv) == 0
    [path] = out.glob("*.json")
    assert {p.name for p in out.iterdir()} == {path.name, path.with_suffix(".md").name, f"{path.stem}-quality.png"}
    r = json.loads(path.read_text())
    assert HOST_KEYS <= set(r["host"]) and r["host"]["machine_busy"] is True and r["host"]["quick"] is False
    assert r["errors"] == {} and set(r["sections"]) == set(r["memory"]) == {
        "training",
        "time_to_quality",
        "sampling",
        "checkpoints",
        "compile",
    }
    assert all("host_peak_rss_mib" in m for m in r["memory"].values())
    [run] = r["sections"]["training"]  # CPU: AMP off only
    assert set(run["stages"]) == {"vqvae", "diffusion"}  # the default (discrete) model has no joint stage
    assert all({"steps_per_s", "rooms_per_s", "optimizer_steps"} <= set(m) for m in run["stages"].values())
    ttq = r["sections"]["time_to_quality"]
    assert set(ttq["reached"]) == {"novel_playable>=0.5", "novel_playable>=0.8"}
    assert [p["epoch"] for p in ttq["curve"]] == [1, 2] and all(
        "novel_playable" in p and "wall_s" in p for p in ttq["curve"]
    )
    sampling = r["sections"]["sampling"]
    assert len(sampling["throughput"]) == len(sampling["samplers"]) * 2  # tiny sizes: steps (2,), batches (1, 4)
    assert {(q["sampler"], q["rooms"]) for q in sampling["quality"]} == {(name, 4) for name in sampling["samplers"]}
    ckpt = r["sections"]["checkpoints"]
    # 1 + 2 epochs
    assert (
        ckpt["sync"]["saves"] == 3 and ckpt["sync"]["file_mib"] > 0 and ckpt["sync"]["at_cadence"]["share"] is not None
    )
    assert "saves" in ckpt["async"] or ckpt["async"]["status"].startswith("pending")
    assert {"eager_ms", "faster", "verdict"} <= set(r["sections"]["compile"])
    md = path.with_suffix(".md").read_text()
    for heading in (
        "## Training throughput",
        "## Time to quality",
        "## Sampling",
        "## Checkpoints",
        "## torch.compile",
        "## Time and peak memory",
    ):
        assert heading in md
    assert "busy, shared machine" in md


@pytest.mark.slow
def test_gpu_check_plumbing_on_cpu(bench: dict[str, ModuleType], vglc_dir: Path, tmp_path: Path) -> None:
    """The GPU script's checks on the CPU (smoke preset): autocast paths in fp32 / fp16 / bf16, and a SIGKILLed run
    resumed bit-exactly per dtype (use_amp "fp16" with its GradScaler, and "bf16")."""
    out = tmp_path / "out"
    assert (
        bench["gpu_check"].main(["--cpu-plumbing", "--skip", "suite", "--data", str(vglc_dir), "--out", str(out)]) == 0
    )
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["errors"] == {} and set(r["results"]) == {"env", "autocast", "resume"}
    paths = r["results"]["autocast"]["paths"]
    assert set(paths) == {"fp32", "fp16", "bf16"}
    # a scaler iff fp16
    assert paths["fp16"]["vqvae"]["grad_scale"] is not None and paths["bf16"]["vqvae"]["grad_scale"] is None
    resume = r["results"]["resume"]
    assert resume["ok"] and set(resume["runs"]) == {"fp16", "bf16"} and resume["skipped"] is None
    for amp, run in resume["runs"].items():
        assert run["use_amp"] == amp and run["max_abs_diff"] == 0.0 and run["run_to_run_noise"] == 0.0  # CPU: bit-exact
        assert run["resumed_said_resuming"] and run["tensors_compared"] > 0
        assert (run["grad_scaler"]["scale"] > 0) if amp == "fp16" else run["grad_scaler"] == {}
    md = (out / "gpu_check.md").read_text()
    assert "## SIGKILL and resume" in md and "- use_amp='fp16': PASS" in md and "- use_amp='bf16': PASS" in md

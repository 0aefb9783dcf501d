"""The benchmark suite's plumbing (bench/run.py, bench/gpu_check.py): files and keys, never timings."""

from __future__ import annotations

import importlib
import json
import sys
import time
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
    assert args.out == tmp_path and args.preset == "notebook"
    assert args.parts == ("env", "steps", "train", "generate", "illuminate")  # the most wanted first
    assert (args.presets, args.precisions) == (("cpu", "gpu"), ("fp32", "bf16", "fp16"))
    assert (args.budget_s, args.evaluations, args.generate_n) == (450.0, 2000, (1000, 10000))
    assert gpu_check.parse_args(["--parts", "train,steps"]).parts == ("train", "steps")  # in the order asked
    plumbing = gpu_check.parse_args(["--cpu-plumbing"])
    assert (plumbing.preset, plumbing.presets, plumbing.evaluations) == ("smoke", ("smoke",), 4)
    for bad in (["--skip", "everything"], ["--parts", "env,speed"], ["--precisions", "fp8"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_gpu_check_skips_what_the_time_budget_leaves_no_time_for(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    gpu_check = bench["gpu_check"]
    out = tmp_path / "out"
    assert gpu_check.main(["--cpu-plumbing", "--budget-s", "0", "--out", str(out)]) == 0  # skipped is not failed
    r = json.loads((out / "gpu_cpu-plumbing.json").read_text())
    assert r["results"] == {} and r["errors"] == {} and list(r["skipped"]) == list(gpu_check.PARTS)
    assert all(why.startswith("skipped: time budget") for why in r["skipped"].values())
    assert "- illuminate: skipped: time budget" in (out / "gpu_cpu-plumbing.md").read_text()
    # without the train part (and no --model) generate and illuminate have no model: skipped, not failed
    assert gpu_check.main(["--cpu-plumbing", "--parts", "generate,illuminate", "--out", str(out)]) == 0
    r = json.loads((out / "gpu_cpu-plumbing.json").read_text())
    assert r["results"] == {} and all(why.startswith("skipped: no model") for why in r["skipped"].values())


def test_a_command_past_its_deadline_is_killed_and_keeps_its_lines(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    from hbench import gpuruns

    command = [sys.executable, "-c", "import time; print('measured', flush=True); time.sleep(120)"]
    run = gpuruns.stream(command, tmp_path / "log", deadline=time.monotonic() + 5)
    assert run.cut_short and run.returncode is None and run.wall_s < 60
    assert [line for _, line in run.lines] == ["measured"] and (tmp_path / "log").read_text() == "measured\n"


def test_stage_times_read_the_trainers_epoch_lines(bench: dict[str, ModuleType]) -> None:
    from hbench import gpuruns

    from hmolqd.training.validation import format_record

    def line(stage: str, epoch: int) -> str:
        return format_record({"stage": stage, "epoch": epoch, "step": 10 * epoch, "train_loss": 1.0})

    lines = [(1.0, "data: ..."), (2.0, line("vqvae", 1)), (4.0, line("vqvae", 3)), (5.0, line("diffusion", 1))]
    times = gpuruns.stage_times(lines)
    assert times["vqvae"] == {
        "epochs": 3,
        "first_epoch_line_s": 2.0,
        "last_epoch_line_s": 4.0,
        "last_step": 30,
        "s_per_epoch": 1.0,
    }
    assert times["diffusion"]["epochs"] == 1 and times["diffusion"]["s_per_epoch"] is None


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
    """Every part of the GPU script but the suite on the CPU (smoke preset, tiny sizes): the training step timed
    under fp32 / bf16 / fp16, a training end to end, generation, illuminate, and a SIGKILLed run resumed bit-exactly
    per dtype (use_amp "bf16", and "fp16" with its GradScaler)."""
    out = tmp_path / "out"
    argv = ["--cpu-plumbing", "--skip", "suite", "--data", str(vglc_dir), "--out", str(out)]
    assert bench["gpu_check"].main(argv) == 0
    r = json.loads((out / "gpu_cpu-plumbing.json").read_text())
    assert r["errors"] == {} and r["skipped"] == {}
    assert list(r["results"]) == ["env", "steps", "train", "generate", "illuminate", "resume"]
    steps = r["results"]["steps"]
    assert [(row["preset"], row["precision"]) for row in steps["rows"]] == [
        ("smoke", p) for p in ("fp32", "bf16", "fp16")
    ]
    for row in steps["rows"]:
        assert set(row["stages"]) == {"vqvae", "diffusion"}
        for m in row["stages"].values():
            assert m["ok"] and len(m["rates"]) == 2 and m["steps_per_s_min"] <= m["steps_per_s"] <= m["steps_per_s_max"]
            assert (m["grad_scale"] is not None) == (row["precision"] == "fp16")  # a scaler iff fp16
            assert m["host_syncs_per_step"]["count"] is None  # counted on CUDA only
    train = r["results"]["train"]
    assert train["ok"] and train["model_final_mib"] > 0 and train["cut_short"] is None
    assert {stage: s["epochs"] for stage, s in train["stages"].items()} == {"vqvae": 2, "diffusion": 2}
    generated = r["results"]["generate"]
    assert [row["n"] for row in generated["rows"]] == [64, 128] and all(
        row["rooms_per_s"] > 0 for row in generated["rows"]
    )
    illuminated = r["results"]["illuminate"]
    assert illuminated["ok"] and [p["evaluations"] for p in illuminated["progress"]] == [2, 4]
    resume = r["results"]["resume"]
    assert resume["ok"] and set(resume["runs"]) == {"fp16", "bf16"} and resume["skipped"] is None
    for amp, run in resume["runs"].items():
        assert run["use_amp"] == amp and run["max_abs_diff"] == 0.0 and run["run_to_run_noise"] == 0.0  # CPU: bit-exact
        assert run["resumed_said_resuming"] and run["tensors_compared"] > 0
        assert (run["grad_scaler"]["scale"] > 0) if amp == "fp16" else run["grad_scaler"] == {}
    md = (out / "gpu_cpu-plumbing.md").read_text()
    for heading in ("## Training step", "## Training the default model", "## Generation speed", "## Illuminate"):
        assert heading in md
    assert "## SIGKILL and resume" in md and "- use_amp='fp16': PASS" in md and "- use_amp='bf16': PASS" in md

"""hmolqd.training.selfcheck (each check passes, and fails when what it checks is broken) and hmolqd.notebook
helpers."""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.image
import pytest
import torch

from hmolqd import notebook
from hmolqd.checkpointing.compare import assert_same, compare_states
from hmolqd.checkpointing.export import export_inference
from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.checkpointing.resume import NO_CHECKPOINT
from hmolqd.config import Config, ConfigError
from hmolqd.training import selfcheck
from hmolqd.training.outputs import SAMPLE_CONDITIONS, ZIP_NAME

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Single-threaded: on two shared CPU cores, torch's thread pool makes these tiny models 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- compare_states


def test_identical_states_compare_equal_and_count_tensors() -> None:
    state = {
        "w": torch.arange(6.0).view(2, 3),
        "opt": {"step": torch.tensor(3), "groups": [{"lr": 0.1}]},
        "nan": float("nan"),
    }
    result = compare_states(state, {**state, "w": state["w"].clone()})
    assert result.diffs == [] and result.tensors == 2 and result.values == 2 and result.max_abs_diff == 0.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["w"].view(-1)[4].add_(0.5), r"\['w'\]: max \|difference\| 0.5"),
        (lambda s: s.update(w=s["w"].double()), r"\['w'\]: torch.float32 \(2, 3\) != torch.float64 \(2, 3\)"),
        (lambda s: s["opt"].update(step=torch.tensor(4)), r"\['opt'\]\['step'\]: 1 of 1 elements differ"),
        (lambda s: s["opt"]["groups"][0].update(lr=0.2), r"\['lr'\]: 0.1 != 0.2"),
        (lambda s: s["opt"].pop("step"), r"\['opt'\]: keys differ: only in first \['step'\]"),
        (lambda s: s["opt"]["groups"].append({}), r"\['groups'\]: length 1 != 2"),
    ],
)
def test_any_difference_is_reported_with_its_key_path(change: Any, message: str) -> None:
    def make() -> dict[str, Any]:
        return {"w": torch.arange(6.0).view(2, 3), "opt": {"step": torch.tensor(3), "groups": [{"lr": 0.1}]}}

    other = make()
    change(other)
    with pytest.raises(AssertionError, match=message):
        assert_same(make(), other, "state")


def test_tolerance_applies_to_floats_only_and_nan_positions_must_match() -> None:
    a = {"x": torch.tensor([1.0, float("nan"), float("inf")]), "n": torch.tensor([1, 2])}
    b = {"x": torch.tensor([1.0 + 1e-7, float("nan"), float("inf")]), "n": torch.tensor([1, 2])}
    assert math.isclose(assert_same(a, b, "s", atol=1e-6).max_abs_diff, 1.1920928955078125e-07)
    with pytest.raises(AssertionError):
        assert_same(a, b, "s")  # exact by default
    assert compare_states(torch.tensor([float("nan"), 1.0]), torch.tensor([1.0, 1.0])).max_abs_diff == math.inf


# ---------------------------------------------------------------- each check passes ...

CHEAP_CHECKS = [
    selfcheck.check_state_round_trip,
    selfcheck.check_rng_round_trip,
    selfcheck.check_checkpoint_files,
    selfcheck.check_rotation,
    selfcheck.check_corrupt_fallback,
    selfcheck.check_inference_export,
]


@pytest.mark.parametrize("check", CHEAP_CHECKS, ids=lambda f: f.__name__)
def test_check_passes_on_cpu_and_in_a_reused_folder(check: Any, tmp_path: Path) -> None:
    first = check(tmp_path, CPU)
    assert check(tmp_path, CPU) == first  # a second run in the same workdir starts from empty folders
    assert isinstance(first, str) and first


def test_round_trip_reports_every_state_bit_exact(tmp_path: Path) -> None:
    detail = selfcheck.check_state_round_trip(tmp_path, CPU)
    assert re.match(r"\d+ tensors of model/optimizer/scheduler/scaler/EMA identical after load", detail)
    assert detail.endswith("(bit-exact)")


# ---------------------------------------------------------------- ... and fails when what it checks is broken


def test_round_trip_fails_without_rng_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selfcheck, "restore_rng_state", lambda state: [])
    with pytest.raises(AssertionError, match="continued training differs"):
        selfcheck.check_state_round_trip(tmp_path, CPU)


def test_round_trip_fails_when_the_optimizer_is_not_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = selfcheck.load_training_state
    monkeypatch.setattr(selfcheck, "load_training_state", lambda ckpt, **kw: real(ckpt, **{**kw, "optimizer": None}))
    with pytest.raises(AssertionError, match=r"loaded state differs: .*\['optimizer'\]"):
        selfcheck.check_state_round_trip(tmp_path, CPU)


def test_rotation_check_fails_when_nothing_is_rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CheckpointManager, "rotate", lambda self: [])
    with pytest.raises(AssertionError, match="keep_last_n=2"):
        selfcheck.check_rotation(tmp_path, CPU)


def test_corrupt_check_fails_when_a_damaged_file_goes_unnoticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = selfcheck._damage
    monkeypatch.setattr(selfcheck, "_damage", lambda path, how: None if how == "alter" else real(path, how))
    with pytest.raises(AssertionError, match="resumed from .*checkpoint_epoch_3.pt, expected checkpoint_epoch_1.pt"):
        selfcheck.check_corrupt_fallback(tmp_path, CPU)


def test_export_check_fails_when_the_export_holds_both_denoisers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_form(gen: Any, folder: Path) -> Path:  # what export_final wrote before one-denoiser exports
        return export_inference(folder / "model_final.pt", gen.parts(), gen.config)

    monkeypatch.setattr(selfcheck, "export_final", full_form)
    with pytest.raises(AssertionError, match=r"holds \['diffusion', 'ema', 'vqvae'\] with denoiser None"):
        selfcheck.check_inference_export(tmp_path, CPU)


def test_run_all_prints_one_line_per_check_and_raises_naming_the_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> str:
        raise RuntimeError("the file vanished")

    monkeypatch.setattr(
        selfcheck,
        "_checks",
        lambda *args: [("fine", lambda: "all good"), ("broken", broken), ("also fine", lambda: "ok")],
    )
    lines: list[str] = []
    with pytest.raises(AssertionError, match=r"^1 of 3 checks failed: broken: RuntimeError: the file vanished$"):
        selfcheck.run_all(tmp_path, device="cpu", log=lines.append)
    assert [line.split(" (")[0] for line in lines[1:]] == ["✔ PASS  fine", "✘ FAIL  broken", "✔ PASS  also fine"]


def test_run_all_returns_results_when_every_check_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selfcheck, "_checks", lambda root, *args: [("folder", lambda: str(root.is_dir()))])
    lines: list[str] = []
    results = selfcheck.run_all(None, device="cpu", log=lines.append)  # None: a temporary folder, removed after
    assert [(r.name, r.passed, r.detail) for r in results] == [("folder", True, "True")]
    assert lines[-1].startswith("all 1 checks passed")
    assert not Path(lines[0].split("working in ")[1]).exists()


@pytest.mark.slow
@pytest.mark.real_data
def test_training_check_fails_when_resume_skips_the_rng(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook test runs the passing case; this one shows the check catches a resume that is not exact."""
    import hmolqd.training.loop

    monkeypatch.setattr(hmolqd.training.loop, "restore_rng_state", lambda state: [])
    with pytest.raises(AssertionError, match="resumed vs uninterrupted checkpoint_latest.pt differs"):
        selfcheck.check_training_resume(tmp_path, vglc_dir, "cpu")


# ---------------------------------------------------------------- notebook helpers


def test_notebook_config_merges_preset_keys_then_overrides(tmp_path: Path) -> None:
    config = {"num_epochs": 400, "num_embeddings": 512, "checkpoint_dir": str(tmp_path / "c"), "seed": 3}
    cfg = notebook.notebook_config(config, overrides={"num_epochs": 7}, preset="smoke")
    smoke = Config.preset("smoke")
    assert cfg.model == smoke.model and cfg.run.name == "smoke"  # the preset's keys replace CONFIG's
    assert cfg.train.num_epochs == 7 and cfg.run.seed == 3 and cfg.paths.checkpoint_dir == str(tmp_path / "c")
    assert cfg.paths.output_dir is not None  # resolved
    with pytest.raises(ConfigError, match="unknown config key 'num_epoch'; did you mean 'num_epochs'"):
        notebook.notebook_config(config, overrides={"num_epoch": 1})
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        notebook.notebook_config(config, preset="nope")


def test_environment_report_on_cpu(tmp_path: Path) -> None:
    cfg = notebook.notebook_config(
        {"data_dir": str(tmp_path), "checkpoint_dir": str(tmp_path / "ck"), "output_dir": str(tmp_path / "out")}
    )
    report = notebook.environment_report(cfg)
    assert f"torch {torch.__version__}" in report
    if not torch.cuda.is_available():
        assert "device: cpu (config device='auto')" in report and "AMP: off (fp32) (use_amp=True)" in report
    assert re.search(r"data_dir: NOT FOUND - data_dir .* holds no", report) and "fetch-data" in report
    assert f"checkpoint_dir: {tmp_path / 'ck'}" in report and f"output_dir: {tmp_path / 'out'}" in report


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int], archs: list[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)


KAGGLE_ARCHS = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]  # a build without sm_60


@pytest.mark.parametrize(
    "name, capability, expect",
    [
        (
            "Tesla P100-PCIE-16GB",
            (6, 0),
            r"UNSUPPORTED GPU: Tesla P100-PCIE-16GB has compute capability 6.0 \(sm_60\).*'GPU T4 x1'",
        ),
        (
            "Tesla T4",
            (7, 5),
            r"GPU 0: Tesla T4, compute capability 7.5\ndevice: cuda:0 .*\nAMP: fp16 autocast \+ GradScaler",
        ),
        ("NVIDIA A100", (8, 0), r"device: cuda:0 .*\nAMP: bf16 autocast"),
    ],
)
def test_environment_report_names_the_gpu_and_refuses_an_unsupported_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, capability: tuple[int, int], expect: str
) -> None:
    _fake_gpu(monkeypatch, name, capability, KAGGLE_ARCHS)
    report = notebook.environment_report(notebook.notebook_config({"data_dir": str(tmp_path)}))
    assert re.search(expect, report, flags=re.S), report
    assert ("UNSUPPORTED" in report) == (capability == (6, 0))


def test_resume_status_reads_without_changing_anything(tmp_path: Path) -> None:
    cfg = notebook.notebook_config({"checkpoint_dir": str(tmp_path)})
    assert notebook.resume_status(cfg).startswith(NO_CHECKPOINT)
    trainee = selfcheck.make_trainee(0, CPU)
    CheckpointManager(tmp_path).save_epoch_end(selfcheck.training_state(trainee, "diffusion", 1))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    status = notebook.resume_status(cfg)
    assert status.startswith(
        f"Resuming from {tmp_path / 'checkpoint_latest.pt'} (stage diffusion, epoch 1, global step 0"
    )
    assert status.endswith("already trained: diffusion: epochs 1")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_training_summary_says_how_training_ended() -> None:
    history = [{"stage": "vqvae", "epoch": 1}, {"stage": "vqvae", "epoch": 2}, {"stage": "diffusion", "epoch": 1}]
    done = SimpleNamespace(
        finished=True,
        stopped=None,
        resumed_from=Path("c/checkpoint_latest.pt"),
        history=history,
        checkpoint_dir=Path("c"),
        output_dir=Path("o"),
    )
    text = notebook.training_summary(done)
    assert "training finished" in text and "resumed from c/checkpoint_latest.pt" in text
    assert "history: vqvae: 2 epoch(s); diffusion: 1 epoch(s)" in text
    stopped = notebook.training_summary(
        SimpleNamespace(**{**vars(done), "finished": False, "stopped": "time budget", "resumed_from": None})
    )
    assert (
        "stopped early (time budget)" in stopped
        and "run the notebook again to resume" in stopped
        and "started from scratch" in stopped
    )


def test_show_image_displays_or_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import IPython.display

    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    notebook.show_image(tmp_path / "training_curves.png")
    assert "training_curves.png: not written yet" in capsys.readouterr().out and not shown
    notebook.show_samples(tmp_path)
    assert "no sample grids yet" in capsys.readouterr().out and not shown
    png = tmp_path / "sample_west_east.png"
    matplotlib.image.imsave(png, torch.zeros(4, 4, 3).numpy())
    notebook.show_samples(tmp_path)
    out = capsys.readouterr().out
    assert "sample_west_east.png: doors east, west; none north, south (sides as seen on screen)" in out
    assert "sample_unconditional.png: not written yet" in out
    assert len(shown) == 1 and shown[0].data == png.read_bytes()


def test_sample_captions_follow_the_sample_conditions(tmp_path: Path) -> None:
    captions = notebook.sample_captions(tmp_path)
    assert [p.name for p, _ in captions] == [f"sample_{name}.png" for name, _ in SAMPLE_CONDITIONS]
    assert captions[0][1] == "sample_unconditional.png: unconditional (no door condition); red outline = not playable"


def test_list_output_files_gives_sizes_and_zip_contents(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    out.mkdir()
    ckpt.mkdir()
    (out / "training_history.json").write_bytes(b"x" * 1500)
    (ckpt / "checkpoint_latest.pt").write_bytes(b"x" * 2_500_000)
    assert f"{ZIP_NAME} is not written yet" in notebook.list_output_files(out, ckpt)
    with zipfile.ZipFile(out / ZIP_NAME, "w") as zf:
        zf.writestr("outputs/training_history.json", "x")
        zf.writestr("checkpoints/checkpoint_latest.pt", "x")
    text = notebook.list_output_files(out, ckpt)
    assert re.search(r"training_history.json +1.50 KB", text) and re.search(r"checkpoint_latest.pt +2.50 MB", text)
    assert f"{ZIP_NAME} holds 2 files" in text and "(1 files, 2.50 MB)" in text


@pytest.mark.real_data
def test_data_summary_and_dungeon_map_on_the_real_corpus(vglc_dir: Path, tmp_path: Path) -> None:
    data_dir, corpus, text = notebook.data_summary(notebook.notebook_config({"data_dir": str(vglc_dir)}))
    assert data_dir == vglc_dir and len(corpus) == 459
    assert text.startswith(f"VGLC Zelda corpus: {vglc_dir}\nrooms: 459") and "graphs:" in text
    image = matplotlib.image.imread(notebook.render_dungeon(corpus, "tloz1_1", tmp_path / "map.png"))
    assert image.ndim == 3 and image.shape[0] > 100
    with pytest.raises(ConfigError, match="dungeon 'tloz99_1' is not in the corpus"):
        notebook.render_dungeon(corpus, "tloz99_1", tmp_path / "x.png")

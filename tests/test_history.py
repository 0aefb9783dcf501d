"""training_history.json and training_curves.png (hmolqd.training.history)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.image import imread

from hmolqd.training.history import load_history, plot_curves, save_history


def records(quality: bool) -> list[dict]:
    out = [{"stage": "vqvae", "epoch": e, "train_loss": 1.0 / e, "lr": 1e-3} for e in (1, 2)]
    for e in (1, 2, 3):
        r = {"stage": "diffusion", "epoch": e, "train_loss": 0.5 / e, "val_loss": 0.6 / e, "lr": 1e-3}
        if quality:
            r.update(
                playable=0.8 + 0.01 * e, novel_playable_symmetric=0.7, symmetric=1.0, distinct=0.9, door_adherence=0.99
            )
        out.append(r)
    return out


def test_history_round_trip(tmp_path: Path) -> None:
    save_history(records(True), tmp_path / "h.json")
    assert load_history(tmp_path / "h.json") == records(True)


def test_curves_gain_a_row_of_generation_metrics_when_measured(tmp_path: Path) -> None:
    plain = imread(plot_curves(records(False), tmp_path / "plain.png"))
    with_quality = imread(plot_curves(records(True), tmp_path / "quality.png"))
    assert plain.shape[0] == 600 and with_quality.shape[0] == 900  # 2 rows of 3 in, then 3 rows, at 100 dpi
    assert plain.shape[1] == with_quality.shape[1]

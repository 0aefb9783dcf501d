"""training_history.json and training_curves.png (hmolqd.training.history)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.image import imread

from hmolqd.training.history import curves_figure, load_history, plot_curves, save_history


def records(quality: bool) -> list[dict]:
    out = [{"stage": "vqvae", "epoch": e, "train_loss": 1.0 / e, "lr": 1e-3} for e in (1, 2)]
    for e in (1, 2, 3):
        r = {"stage": "diffusion", "epoch": e, "train_loss": 0.5 / e, "val_loss": 0.6 / e, "lr": 1e-3}
        if quality:
            r.update(
                playable=0.8 + 0.01 * e,
                novel_playable=0.7,
                novel_playable_symmetric=0.7,
                symmetric=1.0,
                distinct=0.9,
                door_adherence=0.99,
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


def test_every_panel_has_curves_and_equal_metrics_stay_visible() -> None:
    """No empty panel (the VQ-VAE stage generates no rooms: the metrics get one wide panel), and novel_playable is
    not hidden under an equal novel_playable_symmetric."""
    fig = curves_figure(records(True))
    assert len(fig.axes) == 2 * 2 + 1 and all(ax.lines and ax.get_visible() for ax in fig.axes)
    quality = fig.axes[-1]
    lines = {line.get_label(): line for line in quality.lines}
    assert set(lines) == {
        "playable",
        "novel_playable",
        "novel_playable_symmetric",
        "symmetric",
        "distinct",
        "door_adherence",
    }
    below, above = lines["novel_playable"], lines["novel_playable_symmetric"]
    assert list(below.get_ydata()) == list(above.get_ydata())  # the same values ...
    assert below.get_linewidth() > 2 * above.get_linewidth() and below.get_color() != above.get_color()  # ... both seen
    assert [t.get_text() for t in quality.get_legend().get_texts()] == list(lines)

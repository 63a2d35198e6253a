"""History: the CSV counts epochs as the progress does (from 1), and plot() returns a Figure (what a
notebook shows) with labelled axes, integer epoch ticks and the best or restored epoch marked."""
import csv

import pytest

from fusetrain.train import History


def _history(n=4, restored=None):
    h = History()
    for e in range(n):
        h.append(e, {"loss": 1.0 / (e + 1), "accuracy": 0.5 + 0.1 * e, "val_loss": [0.9, 0.5, 0.6, 0.7][e],
                     "val_accuracy": 0.6 + 0.05 * e, "lr": 1e-3 * 0.9 ** e})
    h.restored_epoch = restored
    return h


def test_csv_counts_epochs_from_one(tmp_path):
    h = _history()
    h.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    assert [float(r[3]) for r in rows[1:]] == h.history["val_loss"]


@pytest.mark.parametrize("restored, marked, label", [(None, 2, "best: epoch 2"), (2, 3, "restored: epoch 3")])
def test_plot_returns_a_labelled_figure_marking_the_best_epoch(tmp_path, restored, marked, label):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    h = _history(restored=restored)
    fig = h.plot()
    assert isinstance(fig, Figure) and not list(tmp_path.iterdir())
    # what IPython displays for a returned Figure, with or without pyplot's inline backend
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "lr"]
    assert [ax.get_ylabel() for ax in axes] == ["loss", "accuracy", "learning rate"]
    fig.canvas.draw()
    for ax in axes:
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 4]
        assert ticks and all(float(t).is_integer() for t in ticks)
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert list(lines[label].get_xdata()) == [marked, marked]
    assert list(lines["lr"].get_xdata()) == [1, 2, 3, 4]
    path = tmp_path / "sub" / "curves.png"
    assert h.plot(path, title="run").get_suptitle() == "run"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no epochs"):
        History().plot()

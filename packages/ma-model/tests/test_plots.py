import importlib.util

import pytest

from ma_model.plots import plot

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _result():
    report = {"accuracy": 0.5, "macro_f1": 0.4, "mcc": 0.1,
              "confusion": [[3, 1, 0], [1, 5, 1], [0, 2, 4]]}
    return {"model": [report, report], "gbt": [report, report], "horizons": [10, 50],
            "history": {"train_loss": [1.0, 0.9], "val_loss": [1.1, 1.0]}}


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="the plot extra (matplotlib) is not installed")
def test_plots_are_written_per_horizon(tmp_path):
    written = plot(_result(), tmp_path, log=lambda *_: None)
    names = sorted(p.name for p in written)
    assert names == ["confusion_h10.png", "confusion_h50.png", "macro_f1_by_horizon.png",
                     "training_curves.png"]
    assert all(p.stat().st_size > 0 for p in written)


def test_without_matplotlib_plots_are_skipped_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    said = []
    assert plot(_result(), tmp_path, log=said.append) == []
    assert "matplotlib is not installed" in said[0]

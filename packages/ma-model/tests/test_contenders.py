from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ma_model import contenders as contenders_module
from ma_model import load_splits
from ma_model.contenders import BASELINES, baseline_names, fit_baseline


def test_baseline_names_take_all_or_a_subset_and_name_a_typo():
    assert baseline_names("gbt, majority") == ("gbt", "majority")
    assert baseline_names("all") == BASELINES == ("majority", "logistic", "gbt", "dense")
    with pytest.raises(ValueError, match=r"unknown \['xgboost'\]"):
        baseline_names("gbt,xgboost")


def test_dense_is_the_same_network_with_dense_attention(tiny_config, tmp_path):
    splits = load_splits(tiny_config.data)
    predict = fit_baseline("dense", tiny_config, splits, tmp_path / "dense", torch.device("cpu"),
                           log=lambda *_: None)
    saved = torch.load(tmp_path / "dense" / "best.pt", weights_only=True)
    assert saved["config"]["model"]["attention"] == "sdpa_dense"
    assert saved["config"]["train"]["seed"] == tiny_config.train.seed
    x, dt = splits.test.x[None, :16], splits.test.dt[None, :16]
    assert predict(x, dt).shape == (1, 16, 2, 3)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_learned_baselines_get_the_configs_class_weights_and_time_gap(
        tiny_config, monkeypatch, class_weight):
    cfg = replace(tiny_config, train=replace(tiny_config.train, class_weight=class_weight))
    splits = load_splits(cfg.data)
    seen = {}

    def spy(name):
        return lambda train, **kwargs: seen.setdefault(name, kwargs)

    monkeypatch.setattr(contenders_module, "fit_gbt", spy("gbt"))
    monkeypatch.setattr(contenders_module, "fit_logistic", spy("logistic"))
    for name in ("gbt", "logistic"):
        fit_baseline(name, cfg, splits, Path("unused"), torch.device("cpu"))
        weights = seen[name]["class_weights"]
        assert (weights is None) == (class_weight is None)
        if weights is not None:
            assert weights.shape == (2, 3)
    assert seen["gbt"]["gap"] == max(cfg.data.horizons)


@pytest.mark.parametrize("mirror", [0.0, 0.25])
def test_learned_baselines_get_the_configs_mirror(tiny_config, monkeypatch, tmp_path, mirror):
    import importlib

    from ma_model.data import MirroredWindows

    fit_module = importlib.import_module("ma_model.fit")  # the module, not ma_model.fit()

    cfg = replace(tiny_config, train=replace(tiny_config.train, mirror=mirror))
    splits = load_splits(cfg.data)
    seen = {}

    def spy(name):
        return lambda train, **kwargs: seen.setdefault(name, kwargs)

    def windows(*args):
        seen["dense"] = args[1:]
        return MirroredWindows(*args)

    monkeypatch.setattr(contenders_module, "fit_gbt", spy("gbt"))
    monkeypatch.setattr(contenders_module, "fit_logistic", spy("logistic"))
    monkeypatch.setattr(fit_module, "MirroredWindows", windows)
    for name in ("gbt", "logistic", "dense"):
        fit_baseline(name, cfg, splits, tmp_path / "dense", torch.device("cpu"),
                     log=lambda *_: None)
    if not mirror:
        assert seen["gbt"]["mirror"] is seen["logistic"]["mirror"] is None
        assert "dense" not in seen
        return
    sign, offset = splits.inputs.mirror()
    for name in ("gbt", "logistic"):
        tabular = seen[name]["mirror"]
        assert (tabular.fraction, tabular.seed) == (mirror, cfg.train.seed)
        assert torch.equal(tabular.sign, torch.cat([sign, torch.ones(1)]))
        assert torch.equal(tabular.offset, torch.cat([offset, torch.zeros(1)]))
    p, dense_sign, dense_offset = seen["dense"]  # the network's own mirrored windows
    assert p == mirror and torch.equal(dense_sign, sign) and torch.equal(dense_offset, offset)

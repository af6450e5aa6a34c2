from dataclasses import replace
from pathlib import Path

import pytest

from ma_model import DataConfig, fold_ranges, load_checkpoint, split_ranges, walk_forward
from ma_model.data import load_ticks, tick_arrays


def test_folds_cut_the_test_region_and_train_on_what_precedes_each():
    cfg = DataConfig(sequence_length=16, horizons=(5, 20), val_fraction=0.15, test_fraction=0.3)
    n, gap = 10_000, 20 + 16
    folds = fold_ranges(n, cfg, 4)
    standard = split_ranges(n, cfg)
    assert [f["test"] for f in folds] == [(7000, 7750), (7750, 8500), (8500, 9250), (9250, n)]
    assert {k: folds[0][k] for k in ("train", "val")} == {k: standard[k] for k in ("train", "val")}
    for f in folds:
        assert f["val"] == (f["test"][0] - gap - 1500, f["test"][0] - gap)
        assert f["train"] == (0, f["val"][0] - gap)


def test_without_validation_each_fold_trains_up_to_one_gap_before_it():
    cfg = DataConfig(sequence_length=16, horizons=(5,), val_fraction=0, test_fraction=0.2)
    for f in fold_ranges(1000, cfg, 2):
        assert f["train"] == (0, f["test"][0] - 21) and f["val"] == (f["train"][1],) * 2


def test_folds_of_the_validation_region_read_nothing_after_it():
    cfg = DataConfig(sequence_length=16, horizons=(5, 20), val_fraction=0.15, test_fraction=0.3)
    n, gap = 10_000, 20 + 16
    val = split_ranges(n, cfg)["val"]
    folds = fold_ranges(n, cfg, 2, region="val")
    assert folds[0]["test"][0] == val[0] and folds[-1]["test"][1] == val[1]
    assert folds[0]["test"][1] == folds[1]["test"][0]
    for f in folds:  # the same shape as over the test region, one validation region earlier
        assert f["val"] == (f["test"][0] - gap - 1500, f["test"][0] - gap)
        assert f["train"] == (0, f["val"][0] - gap)
    with pytest.raises(ValueError, match="data.val_fraction is 0"):
        fold_ranges(n, replace(cfg, val_fraction=0), 2, region="val")
    with pytest.raises(ValueError, match="region must be 'test' or 'val'"):
        fold_ranges(n, cfg, 2, region="train")


def test_too_many_folds_are_refused():
    cfg = DataConfig(sequence_length=16, horizons=(5,), test_fraction=0.2)
    with pytest.raises(ValueError, match="each fold needs at least sequence_length 16"):
        fold_ranges(1000, cfg, 13)
    with pytest.raises(ValueError, match="--walk-forward 0"):
        fold_ranges(1000, cfg, 0)


def test_each_fold_is_scored_by_models_trained_before_it(tiny_config):
    cfg = replace(tiny_config, data=replace(tiny_config.data, alpha="tlob"))
    result = walk_forward(cfg, 2, baselines=("majority",), log=lambda *_: None)
    ticks = load_ticks(cfg.data)
    assert len(result["folds"]) == 2 and result["horizons"] == [5, 20]
    for j, fold in enumerate(result["folds"]):
        train_stop = fold["ranges"]["train"][1]
        # The threshold, like everything the models learn from, comes from the rows before.
        expected = tick_arrays(ticks, cfg.data.features, cfg.data.horizons, "tlob", train_stop)
        assert fold["alpha"] == pytest.approx(list(expected.alpha))
        assert len(fold["model"]) == len(fold["majority"]) == 2
        saved = load_checkpoint(Path(cfg.train.out_dir) / f"fold={j}" / "best.pt")
        assert saved["normalization"]["standardizer"]["mean"].numel() == len(
            cfg.data.features.names)
    later = result["folds"][1]["ranges"]["train"][1]
    assert later > result["folds"][0]["ranges"]["train"][1]  # the second fold trains on more
    assert len(result["summary"]["model"]["macro_f1"][0]["values"]) == 2

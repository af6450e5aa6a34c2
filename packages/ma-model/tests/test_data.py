import pytest
import torch

import ma_features
from ma_model import (
    DataConfig,
    WindowDataset,
    prepare,
    rolling_standardize,
    split_ranges,
    tick_arrays,
)
from ma_model.data import balanced_class_weights, tlob_alpha

SPEC = ma_features.FeatureSpec.model_inputs()


@pytest.fixture(scope="module")
def arrays():
    return tick_arrays(ma_features.simulate(4000, levels=1, seed=3), SPEC, (5, 20), alpha=0.0)


def test_tick_arrays_shapes_and_dt(arrays):
    assert arrays.x.shape == (4000, 6) and arrays.dt.shape == (4000,)
    assert arrays.labels.shape == arrays.target.shape == arrays.target_valid.shape == (4000, 2)
    assert arrays.dt[0] == 0 and bool((arrays.dt[1:] > 0).all())
    assert bool((arrays.labels[-5:, 0] == ma_features.IGNORE_INDEX).all())


def test_windows_are_views_of_the_shared_tensor(arrays):
    dataset = WindowDataset(arrays, length=16, stride=4)
    assert len(dataset) == (4000 - 16) // 4 + 1
    x, dt, labels, target, valid = dataset[10]
    assert x.untyped_storage().data_ptr() == arrays.x.untyped_storage().data_ptr()
    assert labels.untyped_storage().data_ptr() == arrays.labels.untyped_storage().data_ptr()
    assert torch.equal(x, arrays.x[40:56]) and torch.equal(dt, arrays.dt[40:56])
    assert torch.equal(labels, arrays.labels[40:56]) and torch.equal(valid,
                                                                     arrays.target_valid[40:56])
    with pytest.raises(ValueError, match="shorter than one sequence"):
        WindowDataset(arrays.rows(0, 10), length=16, stride=1)


def test_splits_are_in_time_order_with_a_gap_of_horizon_plus_sequence():
    cfg = DataConfig(sequence_length=16, horizons=(5, 20), val_fraction=0.2, test_fraction=0.1)
    ranges = split_ranges(4000, cfg)
    gap = 20 + 16
    assert ranges["train"][0] == 0 and ranges["test"][1] == 4000
    assert ranges["val"][0] - ranges["train"][1] == gap
    assert ranges["test"][0] - ranges["val"][1] == gap
    with pytest.raises(ValueError, match="too few"):
        split_ranges(120, cfg)  # test split: 12 rows < 16


def test_no_leakage_across_splits(arrays):
    cfg = DataConfig(sequence_length=16, horizons=(5, 20))
    splits = prepare(arrays, cfg)
    # The last training label reads mids up to row train_stop - 1 + max horizon: before val.
    assert splits.ranges["train"][1] - 1 + 20 < splits.ranges["val"][0]
    # Normalisation uses train rows only: changing every later row changes nothing in train.
    changed = arrays.x.clone()
    changed[splits.ranges["train"][1]:] *= 100
    other = prepare(type(arrays)(changed, arrays.dt, arrays.labels, arrays.target,
                                 arrays.target_valid), cfg)
    assert torch.equal(other.train.x, splits.train.x)
    assert torch.equal(other.inputs.standardizer.mean, splits.inputs.standardizer.mean)
    train_x = arrays.x[: splits.ranges["train"][1]]
    torch.testing.assert_close(splits.train.x.double().mean(0),
                               torch.zeros(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(splits.inputs.standardizer.mean, train_x.double().mean(0))


@pytest.mark.parametrize("rolling", [None, 50])
def test_saved_normalization_reproduces_the_splits(arrays, rolling):
    cfg = DataConfig(sequence_length=16, horizons=(5, 20), rolling_normalization=rolling)
    splits = prepare(arrays, cfg)
    again = prepare(arrays, cfg, splits.normalization_state())
    assert torch.equal(again.test.x, splits.test.x)
    assert again.inputs.dt_scale == splits.inputs.dt_scale
    assert again.inputs.rolling == splits.normalization_state()["rolling"] == rolling
    other = DataConfig(sequence_length=16, horizons=(5, 20), rolling_normalization=60)
    with pytest.raises(ValueError, match=f"rolling window {rolling} differs from data.rolling_"):
        prepare(arrays, other, splits.normalization_state())


def test_rolling_normalization_standardises_each_split_against_the_recent_ticks(arrays):
    plain = prepare(arrays, DataConfig(sequence_length=16, horizons=(5, 20)))
    rolled = prepare(arrays, DataConfig(sequence_length=16, horizons=(5, 20),
                                        rolling_normalization=50))
    # The same training statistics, then the last 50 ticks of the whole series, in time order.
    assert torch.equal(rolled.inputs.standardizer.mean, plain.inputs.standardizer.mean)
    start, stop = rolled.ranges["test"]
    z, _ = plain.inputs.normalize(arrays.x, arrays.dt)
    expected = rolling_standardize(z, 50)[start:stop].float()
    torch.testing.assert_close(rolled.test.x, expected, rtol=0, atol=0)


def test_non_finite_features_are_named():
    ticks = ma_features.simulate(100, levels=1, seed=0)
    ticks.ask_price[7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"ask_price\[7, 0\] is nan"):
        tick_arrays(ticks, SPEC, (5,), 0.0)


def test_parquet_source_reads_the_same_ticks(tmp_path):
    from ma_model import load_ticks

    ticks = ma_features.simulate(500, levels=1, seed=2)
    ma_features.write_parquet(ticks, tmp_path / "t.parquet")
    loaded = load_ticks(DataConfig(source="parquet", file_path=str(tmp_path / "t.parquet")))
    assert loaded.equals(ticks)
    assert len(load_ticks(DataConfig(source="lobster"))) == 999  # the shipped sample


def test_tlob_alpha_is_half_the_mean_absolute_change_of_the_train_rows():
    mid = torch.tensor([100.0, 101, 99, 100, 102, 98, 100, 100, 500, 1], dtype=torch.float64)
    alphas = tlob_alpha(mid, (1, 2), train_stop=6)
    # Horizon 1: rows 0..4 have a complete window inside the train rows: |l| = |p[t+1]/p[t]-1|.
    l1 = [abs(float(mid[t + 1] / mid[t]) - 1) for t in range(5)]
    l2 = [abs(float((mid[t + 1] + mid[t + 2]) / 2 / mid[t]) - 1) for t in range(4)]
    assert alphas == pytest.approx((0.5 * sum(l1) / 5, 0.5 * sum(l2) / 4))
    with pytest.raises(ValueError, match="no training row has a complete window of horizon 9"):
        tlob_alpha(mid, (9,), train_stop=6)


def test_tlob_labels_read_only_the_train_rows():
    ticks = ma_features.simulate(4000, levels=1, seed=3)
    a = tick_arrays(ticks, SPEC, (5, 20), "tlob", train_stop=2000)
    assert len(a.alpha) == 2 and a.alpha[0] < a.alpha[1] and a.alpha[0] > 0
    # The labels are those of the fixed thresholds it derived.
    fixed = tick_arrays(ticks, SPEC, (5, 20), list(a.alpha))
    assert torch.equal(a.labels, fixed.labels) and fixed.alpha == a.alpha
    # The rows after train change nothing in alpha.
    assert tick_arrays(ticks[:2100], SPEC, (5, 20), "tlob", 2000).alpha == a.alpha
    with pytest.raises(ValueError, match="needs the training rows"):
        tick_arrays(ticks, SPEC, (5,), "tlob")


def test_without_validation_split_test_follows_train_after_one_gap(arrays):
    cfg = DataConfig(sequence_length=16, horizons=(5, 20), val_fraction=0, test_fraction=0.3)
    ranges = split_ranges(4000, cfg)
    assert ranges["val"] == (ranges["train"][1],) * 2
    assert ranges["test"] == (ranges["train"][1] + 36, 4000) and ranges["test"][1] - \
        ranges["test"][0] == 1200
    splits = prepare(arrays, cfg)
    assert len(splits.val.x) == 0 and len(splits.train.x) == 4000 - 1200 - 36


def test_balanced_class_weights_give_each_class_a_third_of_the_weight():
    labels = torch.tensor([[0, 2], [1, 2], [1, 2], [1, 0], [ma_features.IGNORE_INDEX, 2]])
    weights = balanced_class_weights(labels)
    # Horizon 0: 4 defined labels, counts 1, 3, 0 -> 4/3, 4/9, and 0 for the class never seen.
    assert torch.allclose(weights[0], torch.tensor([4 / 3, 4 / 9, 0.0]))
    assert torch.allclose(weights[1], torch.tensor([5 / 3, 0.0, 5 / 12]))
    for h in range(2):
        defined = labels[:, h][labels[:, h] != ma_features.IGNORE_INDEX]
        per_class = [float(weights[h, c]) * int((defined == c).sum()) for c in range(3)]
        assert all(v in (0, pytest.approx(len(defined) / 3)) for v in per_class)
    labels[:, 1] = ma_features.IGNORE_INDEX
    with pytest.raises(ValueError, match="a horizon has no defined training label"):
        balanced_class_weights(labels)


def test_mirrored_windows_flip_inputs_labels_and_target(arrays):
    from ma_model.data import MirroredWindows

    windows = WindowDataset(arrays, 16, 8)
    sign, offset = torch.tensor([1.0, -1, -1, -1, -1, 1]), torch.arange(6.0)
    assert all(torch.equal(a, b) for a, b in zip(MirroredWindows(windows, 0.0, sign, offset)[3],
                                                  windows[3], strict=True))
    x, dt, labels, target, valid = MirroredWindows(windows, 1.0, sign, offset)[3]
    x0, dt0, labels0, target0, valid0 = windows[3]
    assert torch.equal(x, x0 * sign + offset) and torch.equal(dt, dt0)
    swap = torch.tensor([2, 1, 0])
    defined = labels0 != ma_features.IGNORE_INDEX
    assert torch.equal(labels[defined], swap[labels0[defined]])
    assert torch.equal(labels[~defined], labels0[~defined])
    assert torch.equal(target, -target0) and torch.equal(valid, valid0)
    torch.manual_seed(0)
    half = MirroredWindows(windows, 0.5, sign, offset)
    flipped = sum(not torch.equal(half[i][0], windows[i][0]) for i in range(len(windows)))
    assert 0.3 * len(windows) < flipped < 0.7 * len(windows)


def test_recency_sampler_favours_the_latest_windows_and_splits_its_draws():
    from ma_model.data import RecencySampler

    windows = list(range(1000))
    sampler = RecencySampler(windows, 4.0, seed=1)
    draws = torch.tensor(list(sampler))
    assert len(draws) == len(sampler) == 1000
    late, early = int((draws >= 900).sum()), int((draws < 100).sum())
    assert 2.5 < late / early < 6  # about 4 (3.9 over these tenths)
    assert list(sampler) == draws.tolist()  # the same epoch, the same draws
    sampler.set_epoch(1)
    assert list(sampler) != draws.tolist()
    sampler.set_epoch(0)
    parts = [list(RecencySampler(windows, 4.0, num_replicas=3, rank=r, seed=1))
             for r in range(3)]
    assert [len(p) for p in parts] == [333] * 3
    assert [d for trio in zip(*parts, strict=True) for d in trio] == draws[:999].tolist()

import numpy as np
import pytest
import torch
from features_reference import assert_columns_close, reference_features
from ticks_factory import random_ticks

import ma_kernels
from ma_features import (
    FeatureSpec,
    compute_features,
    compute_features_frame,
    lobster_sample,
    simulate,
)

FULL = FeatureSpec(depth_imbalance=(1, 2, 4), ofi_levels=4, windows=(1, 7, 100))


def valid_ticks(seed: int, n: int, levels: int = 4):
    """Random ticks with empty deep levels, keeping rows whose best quotes exist."""
    ticks = random_ticks(seed, n, levels)
    return ticks[np.isfinite(ticks.bid_price[:, 0]) & np.isfinite(ticks.ask_price[:, 0])]


def with_time_window(ticks):
    gap = int(np.median(np.diff(ticks.time)))
    return FeatureSpec(depth_imbalance=(3,), ofi_levels=2, windows=(5,), time_windows=(10 * gap,))


@pytest.mark.parametrize("seed", [0, 1])
def test_every_feature_matches_the_reference(seed):
    ticks = valid_ticks(seed, 3000)
    for spec in (FULL, with_time_window(ticks)):
        out, names = compute_features(ticks, spec, dtype=torch.float64)
        assert names == spec.names and out.shape == (len(ticks), len(names))
        assert_columns_close(out, names, reference_features(ticks, spec), rel=1e-10)


def test_simulated_book_float32():
    ticks = simulate(20_000, levels=5, seed=3)
    out, names = compute_features(ticks, FULL)
    assert out.dtype == torch.float32
    assert_columns_close(out, names, reference_features(ticks, FULL), rel=1e-6)


def test_model_inputs_are_the_level1_inputs_the_model_was_built_on():
    """The default model spec: level-1 features made stationary, as ma_model
    first assembled them by hand from the level-1 table and the raw ticks."""
    ticks = simulate(20_000, levels=2, seed=4)
    spec = FeatureSpec.model_inputs()
    out, names = compute_features(ticks, spec, dtype=torch.float64)
    assert names == ("spread", "mid_change", "microprice_offset", "imbalance", "ofi", "log_depth")
    book = {k: torch.from_numpy(getattr(ticks, k)[:, 0]) for k in
            ("bid_price", "bid_size", "ask_price", "ask_size")}
    level1 = ma_kernels.reference.l1_features(torch.stack(list(book.values()), 1))
    mid = level1[:, 1]
    by_hand = torch.stack([level1[:, 0], torch.diff(mid, prepend=mid[:1]), level1[:, 2] - mid,
                           level1[:, 3], level1[:, 4],
                           torch.log1p(book["bid_size"] + book["ask_size"])], 1)
    torch.testing.assert_close(out, by_hand, rtol=1e-9, atol=1e-9)
    assert_columns_close(out, names, reference_features(ticks, spec), rel=1e-10)


@pytest.mark.parametrize("spec", [FULL, FeatureSpec.anchors()], ids=["full", "anchors"])
def test_no_feature_looks_ahead(spec):
    ticks = valid_ticks(5, 4000)
    before, _ = compute_features(ticks, spec, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for t in (0, 1, 99, 2500):
        changed = {}
        for name in ("bid_size", "ask_size", "bid_price", "ask_price", "trade_price",
                     "trade_size", "trade_side"):
            values = getattr(ticks, name).copy()
            values[t + 1 :] = rng.permutation(values[t + 1 :])
            changed[name] = values
        altered = type(ticks)(**{**vars(ticks), **changed})
        after, _ = compute_features(altered, spec, dtype=torch.float64)
        assert not torch.equal(after[t + 1 :], before[t + 1 :])
        assert torch.equal(after[: t + 1], before[: t + 1]), t
        prefix, _ = compute_features(ticks[: t + 1], spec, dtype=torch.float64)
        torch.testing.assert_close(prefix, before[: t + 1], rtol=1e-12, atol=1e-9)


def test_time_windows_cannot_look_ahead_through_equal_times():
    ticks = valid_ticks(6, 200)
    ticks = type(ticks)(**{**vars(ticks), "time": np.repeat(ticks.time[::4], 4)[: len(ticks)]})
    spec = FeatureSpec(instant=(), rolling=("signed_volume",), windows=(), time_windows=(1,))
    out, _ = compute_features(ticks, spec, dtype=torch.float64)
    signed = ticks.trade_side * ticks.trade_size
    # Rows sharing a timestamp: each sums itself and the earlier ones only.
    expected = [signed[i - i % 4 : i + 1].sum() for i in range(len(ticks))]
    np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=1e-12, atol=1e-9)


def test_frame_and_lobster_sample():
    ticks = lobster_sample()
    spec = FeatureSpec(depth_imbalance=(5, 10), ofi_levels=10, windows=(10, 100),
                       time_windows=(1_000_000_000,))
    frame = compute_features_frame(ticks, spec)
    assert list(frame.columns) == list(spec.names)
    assert (frame.index.to_numpy() == ticks.time).all()
    assert np.isfinite(frame.to_numpy()).all()
    assert_columns_close(torch.tensor(frame.to_numpy()), spec.names,
                         reference_features(ticks, spec), rel=1e-10)


def test_window_longer_than_the_series():
    ticks = valid_ticks(9, 300)
    long, _ = compute_features(ticks, FeatureSpec(windows=(10**12,)), dtype=torch.float64)
    short, _ = compute_features(ticks, FeatureSpec(windows=(len(ticks),)), dtype=torch.float64)
    torch.testing.assert_close(long, short, rtol=0, atol=0)


def test_empty_ticks():
    out, names = compute_features(valid_ticks(0, 10)[:0], FULL)
    assert out.shape == (0, len(names))


def test_errors_name_the_problem():
    ticks = valid_ticks(7, 100, levels=2)
    with pytest.raises(ValueError, match="reads 4 book levels; the ticks have 2"):
        compute_features(ticks, FULL)
    bid = ticks.bid_price.copy()
    bid[17, 0] = np.nan
    with pytest.raises(ValueError, match=r"bid_price\[17, 0\] is nan"):
        compute_features(type(ticks)(**{**vars(ticks), "bid_price": bid}))
    time = ticks.time.copy()
    time[40] = time[39] - 1
    with pytest.raises(ValueError, match="time decreases at row 40"):
        compute_features(type(ticks)(**{**vars(ticks), "time": time}))
    with pytest.raises(ValueError, match="spec must be a FeatureSpec"):
        compute_features(ticks, "anchors")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"instant": ("mid", "midprice")}, "midprice"),
        ({"instant": "mid"}, "tuple of names"),
        ({"rolling": ("vwap", "vwap")}, "not distinct"),
        ({"windows": (0,)}, "windows must be a tuple of ints >= 1"),
        ({"time_windows": (1.5,)}, "time_windows must be a tuple of ints >= 1"),
        ({"ofi_levels": -1}, "ofi_levels must be an int >= 0"),
        ({"ofi_levels": True}, "ofi_levels must be an int >= 0"),
        ({"time_windows": tuple(range(1, 10))}, "time_windows: at most 8 entries"),
        ({"windows": (5, 7, 5)}, "windows has repeated values"),
        ({"depth_imbalance": (2, 2)}, "depth_imbalance has repeated values"),
    ],
)
def test_bad_spec(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [FULL, FeatureSpec.anchors()], ids=["full", "anchors"])
def test_gpu_equals_cpu(spec):
    ticks = simulate(50_000, levels=5, seed=8)
    gpu, _ = compute_features(ticks, spec, device="cuda", dtype=torch.float64)
    cpu, _ = compute_features(ticks, spec, dtype=torch.float64)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)

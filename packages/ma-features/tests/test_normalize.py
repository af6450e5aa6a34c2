import io
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ma_features.normalize import Standardizer, rolling_zscore

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def loop_zscore(x, window, min_periods, eps):
    """Plain-loop reference: two-pass mean and population std of rows t-window+1 .. t."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.zeros_like(x)
    for t in range(len(x)):
        rows = x[max(0, t - window + 1) : t + 1]
        if len(rows) < min_periods:
            continue
        mean = rows.mean(axis=0)
        std = np.sqrt(((rows - mean) ** 2).mean(axis=0))
        out[t] = np.where(std > eps, (x[t] - mean) / np.where(std > eps, std, 1), 0)
    return torch.from_numpy(out)


def price_like(n, columns, seed):
    """Random walks far from 0 with small steps: the case where naive sums of squares cancel."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, columns, generator=g, dtype=torch.float64) * 0.01
    return 500.0 + 50 * torch.rand(columns, generator=g, dtype=torch.float64) + steps.cumsum(0)


@pytest.mark.parametrize("window, min_periods", [(1, 1), (20, None), (20, 5), (1500, 100)])
def test_rolling_zscore_matches_loop(window, min_periods):
    x = price_like(3500, 3, seed=1)  # window 1500: rows span 3 blocks of window rows
    periods = window if min_periods is None else min_periods
    z, valid = rolling_zscore(x, window, min_periods)
    assert z.shape == x.shape and z.dtype == x.dtype
    assert torch.equal(valid, torch.arange(1, 3501) >= periods)
    expected = loop_zscore(x, window, periods, eps=1e-12)
    if window == 1:
        assert torch.equal(z, torch.zeros_like(z))  # a one-row window has std 0
    else:
        assert torch.allclose(z, expected, rtol=0, atol=1e-7)
        assert (z - expected).norm() / expected.norm() < 1e-9


def test_rolling_zscore_agrees_with_pandas():
    x = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    frame = pd.DataFrame(x.numpy())
    rolling = frame.rolling(30, min_periods=10)
    expected = ((frame - rolling.mean()) / rolling.std(ddof=0)).to_numpy(copy=True)
    z, valid = rolling_zscore(x, 30, min_periods=10)
    assert torch.allclose(z[valid], torch.from_numpy(expected)[valid], rtol=0, atol=1e-10)
    assert np.isnan(expected[~valid.numpy()]).all() and torch.all(z[~valid] == 0)


def test_one_dimensional_and_float32():
    x = torch.randn(300, generator=torch.Generator().manual_seed(3))
    z, valid = rolling_zscore(x, 25)
    assert z.shape == (300,) and z.dtype == torch.float32 and valid.shape == (300,)
    expected = loop_zscore(x.double(), 25, 25, 1e-12).squeeze(1)
    assert torch.allclose(z.double(), expected, rtol=0, atol=1e-5)


def test_no_look_ahead():
    x = price_like(3000, 2, seed=4)
    t = 2099  # the last row of a block of 100: later blocks must not leak back
    before = rolling_zscore(x, 100).value
    changed = x.clone()
    changed[t + 1 :] = torch.randn(len(x) - t - 1, 2, dtype=torch.float64) * 1e3
    after = rolling_zscore(changed, 100).value
    assert torch.equal(after[: t + 1], before[: t + 1])
    assert not torch.equal(after[t + 1 :], before[t + 1 :])


def test_constant_series_gives_zero():
    z, valid = rolling_zscore(torch.full((50, 2), 123.456, dtype=torch.float64), 10, 3)
    assert torch.equal(z, torch.zeros_like(z)) and valid[2:].all()


def test_flat_stretch_inside_a_series_stays_bounded():
    x = torch.cat([price_like(200, 1, seed=5), torch.full((100, 1), 503.21, dtype=torch.float64)])
    x = torch.cat([x, x[-1:] + 0.5])  # a jump right after a flat stretch
    z = rolling_zscore(x, 50).value
    assert z[250:300].abs().max() < 1e-6  # flat windows: rounding only, no blow-up
    assert z[-1].item() == pytest.approx(math.sqrt(49))  # the bound sqrt(window - 1)


@given(
    values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60),
    window=st.integers(1, 20),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_rolling_zscore_property(values, window, data):
    min_periods = data.draw(st.integers(1, window))
    x = torch.tensor(values, dtype=torch.float64)
    z, valid = rolling_zscore(x, window, min_periods)
    assert torch.isfinite(z).all()
    assert torch.equal(valid, torch.arange(1, len(values) + 1) >= min_periods)
    assert torch.all(z[~valid] == 0)
    expected = loop_zscore(values, window, min_periods, 1e-12).squeeze(1)
    # The documented rounding bound: relative error ~1e-16 * (R / std)**2, R the
    # range of the 2 * window rows ending at t. Compare where that is small (the
    # bound sqrt(W - 1) too: [6, 3e-5, 0] with W = 2 gives R / std = 4e5).
    ranges = [np.ptp(values[max(0, t - 2 * window + 1) : t + 1]) for t in range(len(x))]
    stds = [np.std(values[max(0, t - window + 1) : t + 1]) for t in range(len(x))]
    clear = torch.tensor([s > 0 and r / s < 1e4 for r, s in zip(ranges, stds, strict=True)])
    assert torch.all(z[clear].abs() <= math.sqrt(window - 1) + 1e-6)
    assert torch.allclose(z[clear], expected[clear], rtol=1e-6, atol=1e-6)


def test_long_drifting_series_keeps_precision():
    # Plateaus from 10 to 1000 with 1e-3 noise: a prefix sum of squares over the
    # whole series would lose ~1e-4 of each variance; block-local sums do not.
    g = torch.Generator().manual_seed(9)
    levels = torch.arange(20000, dtype=torch.float64).div(500).floor() * 25 + 10
    x = levels + torch.randn(20000, generator=g, dtype=torch.float64) * 1e-3
    z = rolling_zscore(x, 50).value
    expected = loop_zscore(x, 50, 50, 1e-12).squeeze(1)
    assert torch.allclose(z, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    "x, window, min_periods, eps, match",
    [
        (torch.tensor([1.0, math.nan]), 2, None, 1e-12, r"x\[1\] is nan"),
        (torch.tensor([[1.0, 2.0], [math.inf, 0.0]]), 2, None, 1e-12, r"x\[1, 0\] is inf"),
        (torch.ones(3, dtype=torch.int64), 2, None, 1e-12, "floating"),
        (torch.ones(3, 2, 2), 2, None, 1e-12, "1 or 2 dims"),
        (torch.ones(3), 0, None, 1e-12, "window must be a positive int"),
        (torch.ones(3), 2, 3, 1e-12, r"min_periods must be an int in \[1, window=2\]"),
        (torch.ones(3), 2, 0, 1e-12, "min_periods"),
        (torch.ones(3), 2, None, -1.0, "eps must be a finite number >= 0"),
    ],
)
def test_rolling_zscore_bad_input(x, window, min_periods, eps, match):
    with pytest.raises(ValueError, match=match):
        rolling_zscore(x, window, min_periods, eps)


def test_empty_input():
    z, valid = rolling_zscore(torch.zeros(0, 3), 5)
    assert z.shape == (0, 3) and valid.shape == (0,)


def test_standardizer_uses_train_statistics_only():
    g = torch.Generator().manual_seed(6)
    train = torch.randn(1000, 3, generator=g, dtype=torch.float64) * 4 + 7
    test = torch.randn(200, 3, generator=g, dtype=torch.float64) * 9 - 3
    scaler = Standardizer().fit(train)
    mean, std = train.mean(0), train.std(0, correction=0)
    assert torch.allclose(scaler.transform(test), (test - mean) / std, rtol=1e-12, atol=0)
    z = scaler.transform(train)
    assert torch.allclose(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std(0, correction=0), torch.ones(3, dtype=torch.float64))
    assert torch.equal(Standardizer().fit_transform(train), z)


def test_standardizer_constant_feature_maps_to_zero():
    train = torch.stack([torch.arange(10.0), torch.full((10,), 3.0)], dim=1)
    out = Standardizer().fit(train).transform(torch.tensor([[4.5, 100.0]]))
    assert out.tolist() == [[0.0, 0.0]]


def test_standardizer_keeps_dtype_and_one_dimensional_input():
    scaler = Standardizer().fit(torch.tensor([1.0, 2.0, 3.0]))
    out = scaler.transform(torch.tensor([2.0, 4.0]))
    assert out.dtype == torch.float32 and out.shape == (2,)
    assert torch.allclose(out, torch.tensor([0.0, 2.0 / math.sqrt(2.0 / 3.0)]))


def test_standardizer_state_dict_round_trip_through_checkpoint():
    train = torch.randn(100, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    scaler = Standardizer(eps=1e-9).fit(train)
    buffer = io.BytesIO()
    torch.save({"standardizer": scaler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["standardizer"]
    restored = Standardizer()
    restored.load_state_dict(state)
    x = torch.randn(10, 4)
    assert restored.eps == 1e-9
    assert torch.equal(restored.transform(x), scaler.transform(x))


def test_standardizer_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(torch.ones(2, 2))
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().state_dict()
    with pytest.raises(ValueError, match="0 rows"):
        Standardizer().fit(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"x\[0, 1\] is nan"):
        Standardizer().fit(torch.tensor([[1.0, math.nan]]))
    scaler = Standardizer().fit(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"feature shape \(2,\), fitted on \(3,\)"):
        scaler.transform(torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"x\[1, 2\] is inf"):
        scaler.transform(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.inf]]))
    state = scaler.state_dict()
    with pytest.raises(ValueError, match="keys"):
        Standardizer().load_state_dict({k: v for k, v in state.items() if k != "std"})
    with pytest.raises(ValueError, match="format_version 99"):
        Standardizer().load_state_dict({**state, "format_version": 99})
    with pytest.raises(ValueError, match="negative"):
        Standardizer().load_state_dict({**state, "std": -state["std"]})


@pytest.mark.parametrize("device", DEVICES)
def test_device_matches_cpu(device):
    x = price_like(5000, 3, seed=8)
    cpu = rolling_zscore(x, 200, 20)
    dev = rolling_zscore(x.to(device), 200, 20)
    assert dev.value.device.type == device and dev.valid.device.type == device
    assert torch.allclose(dev.value.cpu(), cpu.value, rtol=0, atol=1e-8)
    assert torch.equal(dev.valid.cpu(), cpu.valid)
    scaler = Standardizer().fit(x.to(device))
    assert scaler.mean.device.type == "cpu"
    out = scaler.transform(x.to(device, torch.float32))
    assert out.device.type == device and out.dtype == torch.float32
    expected = Standardizer().fit(x).transform(x.float().double()).float()
    assert torch.allclose(out.cpu(), expected, rtol=0, atol=1e-5)


def test_affine_is_the_map_transform_applies():
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0], [8.0, 5.0]], dtype=torch.float64)
    scaler = Standardizer().fit(train)
    shift, scale = scaler.affine(dtype=torch.float32)
    assert shift.dtype == scale.dtype == torch.float32
    assert scale[1] == 0  # a constant feature maps to 0, not to noise / ~0
    x = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(scaler.transform(x), (x - shift.double()) * scale.double(),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().affine()

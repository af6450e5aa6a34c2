import pytest
import torch
from books import random_series
from conftest import DEVICES

import ma_kernels
from ma_kernels import book_stream

SPEC = {"instant": ("spread", "mid_change", "imbalance", "ofi", "inter_arrival"),
        "rolling": ("ofi", "realized_variance"), "windows": (4,), "time_windows": (6,)}
MAX_EVENTS, LIMIT, OVERFLOW = 16, 1e6, 10


def rounds(batch: int, n: int, seed: int, device: str):
    """n rounds of one tick per instrument (random ones active), some made bad."""
    series = [random_series(n, levels=2, seed=seed + i) for i in range(batch)]
    g = torch.Generator().manual_seed(seed)
    for k in range(n):
        rows = [{name: t[k] for name, t in s.items()} for s in series]
        f64 = torch.stack([torch.cat([r["bid_price"], r["bid_size"], r["ask_price"],
                                      r["ask_size"], torch.stack([r["trade_price"],
                                      r["trade_size"], r["trade_side"].double()])])
                           for r in rows])
        active = torch.rand(batch, generator=g) < 0.8
        i64 = torch.stack([torch.stack([r["time"] for r in rows]), active.long(),
                           torch.ones(batch, dtype=torch.int64)], 1)
        if k % 5 == 4:  # a crossed book on instrument 0, a negative size on the last
            f64[0, 0] = f64[0, 4] + 0.5
            f64[-1, 2] = -1.0
        yield f64.to(device), i64.to(device)


def by_ops(f64, i64, state, x_index, shift, scale):
    """The same round through the separate ops, standardised in torch."""
    levels = state[0].shape[2]
    book = [f64[:, j * levels:(j + 1) * levels] for j in range(4)]
    trade = [f64[:, 4 * levels + j] for j in range(3)]
    time, wanted, event = i64.unbind(1)
    reasons = ma_kernels.book_tick_reasons(event, time, *book, *trade, state).long()
    active = (wanted > 0) & (reasons == 0)
    columns, terms, _ = ma_kernels.book_features_step(time, *book, *trade, active, state,
                                                      max_events=MAX_EVENTS, **SPEC)
    x = (columns[:, x_index] - shift) * scale
    dt = columns[:, 4] / 2.0
    ok = (torch.isfinite(x) & (x.abs() <= LIMIT)).all(1) & torch.isfinite(dt) & (dt <= LIMIT)
    accepted = active & ok
    ma_kernels.book_features_commit(time, *book, accepted, terms, state)
    code = torch.where(reasons != 0, reasons, (~ok).long() * OVERFLOW) * (wanted > 0)
    return x.float(), dt.float(), accepted, code


# Model inputs are standardised eight at a time: fewer, as many, and more.
@pytest.mark.parametrize("x_index", [(0, 3, 7), (0, 1, 2, 3, 5, 6, 7, 8),
                                     (0, 1, 2, 3, 5, 6, 7, 8, 0, 2, 8)])
@pytest.mark.parametrize("device", DEVICES)
def test_one_kernel_equals_the_separate_ops(device, x_index):
    batch, n = 5, len(x_index)
    state = book_stream.stream_state(batch, 2, MAX_EVENTS, device)
    twin = [t.clone() for t in state]
    x_index = torch.tensor(x_index, device=device)
    shift = torch.linspace(-1, 1, n, dtype=torch.float64, device=device)
    scale = torch.linspace(0.5, 2, n, dtype=torch.float64, device=device)
    options = dict(max_events=MAX_EVENTS, x_index=x_index, shift=shift, scale=scale,
                   dt_column=4, dt_scale=2.0, limit=LIMIT, overflow_code=OVERFLOW, **SPEC)
    refused = 0
    for f64, i64 in rounds(batch, 40, 3, device):
        x, dt, accepted, code = ma_kernels.stream_inputs(f64, i64, state, **options)
        want = by_ops(f64, i64, twin, x_index, shift, scale)
        assert torch.equal(accepted, want[2]) and torch.equal(code, want[3])
        rows = accepted.cpu()
        torch.testing.assert_close(x[rows], want[0][rows], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(dt[rows], want[1][rows], rtol=1e-6, atol=1e-6)
        refused += int((code != 0).sum())
    for own, other in zip(state, twin, strict=True):
        torch.testing.assert_close(own, other, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert refused >= 8  # the bad ticks were refused, not lost


def test_bad_arguments_are_named():
    state = book_stream.stream_state(2, 1, 1)
    f64, i64 = torch.zeros(2, 7, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.int64)
    options = dict(instant=("spread", "inter_arrival"), x_index=torch.tensor([0]),
                   shift=torch.zeros(1, dtype=torch.float64),
                   scale=torch.ones(1, dtype=torch.float64), dt_column=1, dt_scale=1.0,
                   limit=1e6, overflow_code=10)
    with pytest.raises(ValueError, match="in_f64 must have shape"):
        ma_kernels.stream_inputs(f64[:, :5], i64, state, **options)
    with pytest.raises(ValueError, match="dt_column 5 is not a column"):
        ma_kernels.stream_inputs(f64, i64, state, **{**options, "dt_column": 5})
    with pytest.raises(ValueError, match="x_index must name columns"):
        ma_kernels.stream_inputs(f64, i64, state, **{**options, "x_index": torch.tensor([3])})
    with pytest.raises(ValueError, match="shift must have dtype"):
        ma_kernels.stream_inputs(f64, i64, state, **{**options, "shift": torch.zeros(1)})

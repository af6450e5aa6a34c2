"""Junk into the engine: any field of any tick set to NaN, an infinity, a
huge or non-positive number, or time stepped back. Each tick is refused
with one of REJECTIONS or gives finite probabilities: never a NaN signal,
and no tick is lost (docs/reliability.md). The named cases (one reason
each) are in test_engine.py."""

import numpy as np
import torch
from engines import engine_for, ticks_of
from hypothesis import given, settings
from hypothesis import strategies as st

import ma_features
from ma_runtime import REJECTIONS

FIELDS = ["time", "event", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
          "trade_size", "trade_side"]
JUNK = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, 1e20, -1.0, 0.0, 1e-300, 2**62, -2**62])
N = 24


@settings(max_examples=30, deadline=None)
@given(row=st.integers(0, N - 1), field=st.sampled_from(FIELDS), level=st.integers(0, 1),
       junk=JUNK, instrument=st.integers(-1, 2))
def test_junk_is_refused_or_finite_and_nothing_is_lost(row, field, level, junk, instrument):
    ticks = ticks_of(N, 7)
    values = {k: v.copy() for k, v in vars(ticks).items()}
    column = values[field]
    if column.dtype.kind != "f":  # an integer column: its extremes stand for the infinities
        info = np.iinfo(column.dtype)
        finite = np.isfinite(junk)
        junk = max(info.min, min(info.max, int(junk))) if finite else (
            info.min if junk == -np.inf else info.max)
    cast = column.dtype.type(junk)
    if column.ndim == 2:
        column[row, level] = cast
    else:
        column[row] = cast
    engine = engine_for(instruments=2)
    ids = np.zeros(N, dtype=np.int64)
    ids[row] = instrument
    signals = engine.push(ma_features.Ticks(**values), ids)
    refused = signals.rejected_reason.tolist()
    assert set(refused) <= set(REJECTIONS)
    assert len(signals) + len(refused) == N and sum(engine.rejected.values()) == len(refused)
    assert torch.isfinite(signals.probabilities).all()
    if instrument not in (0, 1):
        assert "unknown_instrument" in refused

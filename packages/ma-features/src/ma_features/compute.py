"""compute_features: the features of a :class:`FeatureSpec` over a whole
series of ticks, on the CPU or a GPU.

The ANCHORS set (and any subset of it with one event window) runs as one
fused ma_kernels pass; any other spec runs as vectorised torch over the
formulas of :mod:`ma_features.rows`, in float64.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import torch

import ma_kernels

from ._tensors import rolling_moments
from .rows import Event, event_values, rolling_values
from .spec import FeatureSpec
from .ticks import Ticks

# Where the fused op puts each feature it computes.
_FUSED_INSTANT = {name: i for i, name in enumerate(ma_kernels.L1_FEATURES)}
_FUSED_ROLLING = {"ofi": 5, "vwap": 6, "realized_variance": 7}


def compute_features(
    ticks: Ticks,
    spec: FeatureSpec | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """``([N, F] tensor on device, F column names)`` of ``spec`` (default: every
    instant feature and every rolling one over 100 events).

    Row ``t`` reads only rows ``<= t``. Windows at the start of the series
    cover the rows that exist. Raises ValueError when the spec needs more
    levels than the ticks have, when a best bid or ask price is not finite,
    or when time decreases (naming the row).
    """
    spec = FeatureSpec() if spec is None else spec
    _check(ticks, spec)
    n = len(ticks)
    if n == 0:
        return torch.empty((0, len(spec.names)), device=device, dtype=dtype), spec.names
    columns = _fused_columns(spec)
    if columns is not None:
        window = spec.windows[0] if spec.windows else 1
        out = ma_kernels.microstructure_features(_table(ticks, device, dtype), window)
        return out[:, columns], spec.names
    return _features(ticks, spec, device).to(dtype), spec.names


def compute_features_frame(ticks: Ticks, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """The features as a float64 DataFrame indexed by event time."""
    values, names = compute_features(ticks, spec, dtype=torch.float64)
    index = pd.Index(ticks.time, name="time")
    return pd.DataFrame(values.numpy(), columns=list(names), index=index)


def _check(ticks: Ticks, spec: FeatureSpec) -> None:
    if not isinstance(ticks, Ticks):
        raise ValueError(f"ticks must be ma_features.Ticks, got {type(ticks).__name__}")
    if not isinstance(spec, FeatureSpec):
        raise ValueError(f"spec must be a FeatureSpec, got {type(spec).__name__}")
    if spec.levels > ticks.levels:
        raise ValueError(f"the spec reads {spec.levels} book levels; the ticks have {ticks.levels}")
    for name in ("bid_price", "ask_price"):
        bad = np.flatnonzero(~np.isfinite(getattr(ticks, name)[:, 0]))
        if len(bad):
            raise ValueError(
                f"{name}[{bad[0]}, 0] is {getattr(ticks, name)[bad[0], 0]}: features need a "
                "best bid and ask on every row (drop empty-sided rows first)"
            )
    back = np.flatnonzero(np.diff(ticks.time) < 0)
    if len(back):
        raise ValueError(f"time decreases at row {back[0] + 1}: ticks must be in time order")


def _fused_columns(spec: FeatureSpec) -> list[int] | None:
    """Columns of the fused op's output that make up ``spec``, or None if it cannot."""
    if spec.depth_imbalance or spec.ofi_levels or spec.time_windows or len(spec.windows) > 1:
        return None
    rolling = spec.rolling if spec.windows else ()
    if not (set(spec.instant) <= _FUSED_INSTANT.keys() and set(rolling) <= _FUSED_ROLLING.keys()):
        return None
    return [_FUSED_INSTANT[name] for name in spec.instant] + [_FUSED_ROLLING[r] for r in rolling]


def _table(ticks: Ticks, device, dtype) -> torch.Tensor:
    columns = [ticks.bid_price[:, 0], ticks.bid_size[:, 0], ticks.ask_price[:, 0],
               ticks.ask_size[:, 0], ticks.trade_price, ticks.trade_size]
    return torch.from_numpy(np.stack(columns, axis=1)).to(device=device, dtype=dtype)


def events(ticks: Ticks, device) -> Event:
    """All rows of ``ticks`` as one float64 :class:`Event` on ``device`` (time stays int64)."""
    tensors = ticks.to_tensors(device=device, dtype=torch.float64)
    tensors["trade_side"] = tensors["trade_side"].to(torch.float64)
    return Event(**{f.name: tensors[f.name] for f in fields(Event)})


def _features(ticks: Ticks, spec: FeatureSpec, device) -> torch.Tensor:
    now = events(ticks, device)
    before = Event(**{f.name: _shift(getattr(now, f.name)) for f in fields(Event)})
    has_before = torch.arange(len(ticks), device=now.time.device) > 0
    columns, terms, mid = event_values(spec, now, before, has_before)
    for window in spec.windows:
        columns += rolling_values(spec, _window_sums(terms, window), mid)
    for tau in spec.time_windows:
        columns += rolling_values(spec, _time_window_sums(terms, now.time, tau), mid)
    if not columns:
        return mid.new_empty((len(ticks), 0))
    return torch.stack(columns, dim=1)


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Row t holds row t - 1 (row 0 itself; event_values masks it)."""
    return torch.cat([x[:1], x[:-1]])


def _window_sums(terms: torch.Tensor, window: int) -> torch.Tensor:
    """Sums over rows ``max(0, t - window + 1) .. t``, from block-local prefix sums."""
    window = min(window, len(terms))  # the same sums; rolling_moments pads to a whole window
    mean, _ = rolling_moments(terms, window, with_var=False)
    count = (torch.arange(len(terms), device=terms.device) + 1).clamp_max(window)
    return mean * count.unsqueeze(1).to(terms.dtype)


def _time_window_sums(terms: torch.Tensor, time: torch.Tensor, tau: int) -> torch.Tensor:
    """Sums over rows ``j <= t`` with ``time[j] > time[t] - tau``: differences of
    one float64 prefix sum (relative error ~ N * 2**-53 of the prefix's scale)."""
    prefix = torch.cat([terms.new_zeros((1, terms.shape[1])), terms.cumsum(0)])
    first = torch.searchsorted(time, time - tau, right=True)
    return prefix[1:] - prefix[first]

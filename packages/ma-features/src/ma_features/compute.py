"""compute_features: the features of a :class:`FeatureSpec` over a whole
series of ticks, on the CPU or a GPU, as one fused ma_kernels pass.

The ANCHORS set (and any subset of it with one event window) runs on
``ma_kernels.microstructure_features``, which reads the level-1 table in the
output dtype; every other spec on ``ma_kernels.book_features``, which reads
the float64 ticks. :class:`~ma_features.FeatureState` computes the same
function event by event from the formulas of :mod:`ma_features.rows`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import ma_kernels

from .spec import FeatureSpec
from .ticks import Ticks

# Where the fused op puts each feature it computes.
_FUSED_INSTANT = {name: i for i, name in enumerate(ma_kernels.L1_FEATURES)}
_FUSED_ROLLING = {"ofi": 5, "vwap": 6, "realized_variance": 7}
# The Ticks fields ma_kernels.book_features reads.
_BOOK_FEATURES_INPUTS = ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
                         "trade_size", "trade_side")


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
    tensors = ticks.to_tensors(device=device, dtype=torch.float64)
    book = {name: tensors[name] for name in _BOOK_FEATURES_INPUTS}
    out = ma_kernels.book_features(
        **book, instant=spec.instant, depth_imbalance=spec.depth_imbalance,
        ofi_levels=spec.ofi_levels, rolling=spec.rolling, windows=spec.windows,
        time_windows=spec.time_windows, dtype=dtype,
    )
    return out, spec.names


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

"""compute_features: the features of a :class:`FeatureSpec` over a whole
series of ticks, on the CPU or a GPU, as one pass of ``ma_kernels.book_features``
over the float64 ticks. :class:`~ma_features.FeatureState` computes the same
function event by event (``ma_kernels.book_features_step``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import ma_kernels

from .spec import FeatureSpec
from .ticks import Ticks

# The Ticks fields ma_kernels.book_features reads, in its argument order.
BOOK_FEATURES_INPUTS = ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
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
    tensors = ticks.to_tensors(device=device, dtype=torch.float64)
    out = ma_kernels.book_features(
        *(tensors[name] for name in BOOK_FEATURES_INPUTS), instant=spec.instant,
        depth_imbalance=spec.depth_imbalance, ofi_levels=spec.ofi_levels, rolling=spec.rolling,
        windows=spec.windows, time_windows=spec.time_windows, dtype=dtype,
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

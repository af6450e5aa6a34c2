"""Microstructure features of :class:`~ma_features.Ticks`, computed by the
fused kernels of ma_kernels on the CPU or a GPU."""

from __future__ import annotations

import pandas as pd
import torch

import ma_kernels

from .ticks import Ticks

LEVEL1_FEATURES = ma_kernels.L1_FEATURES


def level1_features(
    ticks: Ticks, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[N, 5]`` tensor of :data:`LEVEL1_FEATURES` (formulas: docs/features.md)."""
    return ma_kernels.l1_features(ticks.level1(device=device, dtype=dtype))


def level1_features_frame(ticks: Ticks) -> pd.DataFrame:
    """The level-1 features as a float64 DataFrame indexed by event time."""
    values = level1_features(ticks, dtype=torch.float64).numpy()
    return pd.DataFrame(
        values, columns=list(LEVEL1_FEATURES), index=pd.Index(ticks.time, name="time")
    )

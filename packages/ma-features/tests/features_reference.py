"""The float64 oracle of a FeatureSpec, column by column: ma_kernels.reference,
plain torch written independently of the kernels."""

from __future__ import annotations

import numpy as np
import torch

from ma_features import FeatureSpec, Ticks
from ma_kernels import reference


def reference_features(ticks: Ticks, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in vars(ticks).items()}
    inputs = ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
              "trade_size", "trade_side")
    out = reference.book_features(
        *(t[name] for name in inputs), instant=spec.instant,
        depth_imbalance=spec.depth_imbalance, ofi_levels=spec.ofi_levels, rolling=spec.rolling,
        windows=spec.windows, time_windows=spec.time_windows,
    )
    return dict(zip(spec.names, out.unbind(1), strict=True))


def assert_columns_close(out: torch.Tensor, names, expected: dict, rel: float) -> None:
    """Each column within ``rel`` of the oracle, relative to the column's scale
    (a window sum near 0 is as accurate as its terms, not as its value)."""
    out = out.detach().cpu().double()
    assert out.shape == (len(expected[names[0]]) if names else len(out), len(names))
    if len(out) == 0:
        return
    for i, name in enumerate(names):
        want = expected[name].double()
        scale = want.abs().max().clamp_min(1e-300)
        err = ((out[:, i] - want).abs() / (want.abs() + scale)).max().item()
        assert err <= rel, (name, err)

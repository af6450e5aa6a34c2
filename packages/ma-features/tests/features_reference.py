"""The float64 oracle of a FeatureSpec, column by column, from the primitives
of ma_kernels.reference (written independently of ma_features.rows)."""

from __future__ import annotations

import numpy as np
import torch

from ma_features import FeatureSpec, Ticks
from ma_kernels import reference


def reference_features(ticks: Ticks, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in vars(ticks).items()}
    level1 = reference.l1_features(
        torch.stack([t["bid_price"][:, 0], t["bid_size"][:, 0], t["ask_price"][:, 0],
                     t["ask_size"][:, 0]], 1)
    )
    mid = level1[:, 1]
    returns = reference.log_mid_returns(mid)
    ofi = level1[:, 4]
    signed = t["trade_side"].double() * t["trade_size"]
    gaps = torch.zeros(len(ticks), dtype=torch.float64)
    gaps[1:] = (t["time"][1:] - t["time"][:-1]).double() * 1e-9
    cols = dict(zip(("spread", "mid", "microprice", "imbalance", "ofi"), level1.unbind(1),
                    strict=True))
    cols.update(log_return=returns, signed_volume=signed, inter_arrival=gaps)
    out = {name: cols[name] for name in spec.instant}
    for k in spec.depth_imbalance:
        out[f"depth_imbalance_{k}"] = reference.depth_imbalance(t["bid_size"], t["ask_size"], k)
    if spec.ofi_levels:
        levels = reference.level_ofi(*(t[f"{s}"][:, : spec.ofi_levels] for s in (
            "bid_price", "bid_size", "ask_price", "ask_size")))
        for i in range(spec.ofi_levels):
            out[f"ofi_level_{i + 1}"] = levels[:, i]
        out[f"mlofi_{spec.ofi_levels}"] = levels.sum(1)
    price, size = t["trade_price"], t["trade_size"]
    windows = [(str(w), lambda x, w=w: reference.rolling_sum(x, w)) for w in spec.windows]
    windows += [(f"{tau}ns", lambda x, tau=tau: reference.rolling_time_sum(x, t["time"], tau))
                for tau in spec.time_windows]
    for suffix, window_sum in windows:
        for name in spec.rolling:
            if name == "ofi":
                out[f"ofi_sum_{suffix}"] = window_sum(ofi)
            elif name == "signed_volume":
                out[f"signed_volume_sum_{suffix}"] = window_sum(signed)
            elif name == "vwap":
                notional, volume = window_sum(price * size), window_sum(size)
                trades = window_sum((size > 0).double())
                out[f"vwap_{suffix}"] = torch.where(trades > 0, notional / volume, mid)
            else:
                out[f"realized_variance_{suffix}"] = window_sum(returns**2)
    assert tuple(out) == spec.names
    return out


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

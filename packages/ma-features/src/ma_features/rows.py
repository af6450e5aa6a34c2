"""The per-event formulas of every feature, on tensors of any leading shape,
shared by the batch path (:func:`~ma_features.compute_features`, all rows at
once) and the streaming one (:class:`~ma_features.FeatureState`, one event of
many instruments at a time), so both compute the same function.

Everything here runs in float64; callers cast the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .spec import FeatureSpec

# Rolling terms of one event, summed over windows.
TERMS = ("ofi", "signed_volume", "notional", "volume", "trades", "squared_return")


@dataclass(frozen=True)
class Event:
    """One event per leading index: book ``[..., K]``, the rest ``[...]``."""

    time: torch.Tensor
    bid_price: torch.Tensor
    bid_size: torch.Tensor
    ask_price: torch.Tensor
    ask_size: torch.Tensor
    trade_price: torch.Tensor
    trade_size: torch.Tensor
    trade_side: torch.Tensor


def level_ofi(now: Event, before: Event, levels: int) -> torch.Tensor:
    """``[..., levels]`` order flow imbalance of Cont, Kukanov and Stoikov per
    level. An empty level (price NaN, size 0) is priced -inf on the bid side and
    +inf on the ask side, so a level that appears adds its size and one that
    empties removes its old size."""
    def side(event: Event, name: str, empty: float):
        price = getattr(event, f"{name}_price")[..., :levels].nan_to_num(nan=empty)
        return price, getattr(event, f"{name}_size")[..., :levels]

    b, qb = side(now, "bid", -torch.inf)
    pb, pqb = side(before, "bid", -torch.inf)
    a, qa = side(now, "ask", torch.inf)
    pa, pqa = side(before, "ask", torch.inf)
    bid_flow = torch.where(b >= pb, qb, 0.0) - torch.where(b <= pb, pqb, 0.0)
    ask_flow = torch.where(a <= pa, qa, 0.0) - torch.where(a >= pa, pqa, 0.0)
    return bid_flow - ask_flow


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, fallback: torch.Tensor | float):
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, 1.0), fallback)


def event_values(
    spec: FeatureSpec, now: Event, before: Event, has_before: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The event's non-rolling columns (in spec order), its rolling terms
    ``[..., len(TERMS)]`` and its mid. Where ``has_before`` is False (the first
    event) OFI, log return and inter-arrival time are 0."""
    bid, ask = now.bid_price[..., 0], now.ask_price[..., 0]
    bid_size, ask_size = now.bid_size[..., 0], now.ask_size[..., 0]
    mid = (bid + ask) / 2
    mid_before = (before.bid_price[..., 0] + before.ask_price[..., 0]) / 2
    positive = has_before & (mid > 0) & (mid_before > 0)
    # log1p of the relative step: the log of the rounded ratio loses tiny returns.
    log_return = torch.where(positive, torch.log1p(_safe_ratio(mid - mid_before, mid_before, 0.0)),
                             0.0)
    ofi = torch.where(has_before, level_ofi(now, before, 1)[..., 0], 0.0)
    signed_volume = now.trade_side * now.trade_size
    depth = bid_size + ask_size
    instant = {
        "spread": lambda: ask - bid,
        "mid": lambda: mid,
        "microprice": lambda: _safe_ratio(bid * ask_size + ask * bid_size, depth, mid),
        "imbalance": lambda: _safe_ratio(bid_size - ask_size, depth, 0.0),
        "ofi": lambda: ofi,
        "log_return": lambda: log_return,
        "signed_volume": lambda: signed_volume,
        "inter_arrival": lambda: torch.where(
            has_before, (now.time - before.time).to(mid.dtype) * 1e-9, 0.0
        ),
        # Price differences, not differences of rounded mids.
        "mid_change": lambda: torch.where(
            has_before, ((bid - before.bid_price[..., 0]) + (ask - before.ask_price[..., 0])) / 2,
            0.0,
        ),
        # microprice - mid = spread * imbalance / 2, without cancelling two prices.
        "microprice_offset": lambda: _safe_ratio((ask - bid) * (bid_size - ask_size), 2 * depth,
                                                 0.0),
        "log_depth": lambda: torch.log1p(depth),
    }
    columns = [instant[name]() for name in spec.instant]
    for k in spec.depth_imbalance:
        bids, asks = now.bid_size[..., :k].sum(-1), now.ask_size[..., :k].sum(-1)
        columns.append(_safe_ratio(bids - asks, bids + asks, 0.0))
    if spec.ofi_levels:
        per_level = torch.where(
            has_before.unsqueeze(-1), level_ofi(now, before, spec.ofi_levels), 0.0
        )
        columns += [*per_level.unbind(-1), per_level.sum(-1)]
    trade = now.trade_size > 0
    terms = torch.stack(
        [ofi, signed_volume, now.trade_price * now.trade_size, now.trade_size,
         trade.to(mid.dtype), log_return**2],
        dim=-1,
    )
    return columns, terms, mid


def rolling_values(spec: FeatureSpec, sums: torch.Tensor, mid: torch.Tensor) -> list[torch.Tensor]:
    """The rolling columns of one window from its sums ``[..., len(TERMS)]``:
    a window without a trade has the event's mid as VWAP; the variance is
    clamped at 0 against the rounding of differences of sums."""
    ofi, signed_volume, notional, volume, trades, squared = sums.unbind(-1)
    values = {
        "ofi": lambda: ofi,
        "signed_volume": lambda: signed_volume,
        # trades counts events exactly, so rounding never makes a window "traded".
        "vwap": lambda: torch.where(trades > 0.5, notional / volume.where(trades > 0.5, 1.0), mid),
        "realized_variance": lambda: squared.clamp_min(0.0),
    }
    return [values[name]() for name in spec.rolling]

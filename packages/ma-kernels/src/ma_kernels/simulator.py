"""The limit order book simulator's C++ event loop, behind one checked call.

The model, its rates and its parameters: docs/simulator.md. Defaults live in
``ma_features.SimulatorConfig``; this layer takes every parameter explicitly.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from . import _C

# Keeps sizes (int64 inside the loop) far from overflow.
_MAX_SIZE = 2**40


class LobSimulation(NamedTuple):
    """One row per event; book columns ``[N, levels]`` hold the book after it.

    Field names and dtypes are those of ``ma_features.Ticks``: ``time`` int64
    ns, ``event`` int8 LOBSTER codes, float64 prices and sizes (an empty level
    has price NaN and size 0), trade columns 0 where the event is no trade.
    """

    time: torch.Tensor
    event: torch.Tensor
    bid_price: torch.Tensor
    bid_size: torch.Tensor
    ask_price: torch.Tensor
    ask_size: torch.Tensor
    trade_price: torch.Tensor
    trade_size: torch.Tensor
    trade_side: torch.Tensor


def simulate_lob(
    n_events: int,
    levels: int,
    seed: int,
    *,
    tick_size: float,
    initial_bid: float,
    limit_rate: float,
    spread_limit_rate: float,
    market_rate: float,
    market_imbalance_bias: float,
    spread_imbalance_bias: float,
    cancel_rate: float,
    partial_cancel_prob: float,
    max_order_size: int,
) -> LobSimulation:
    """Simulates ``n_events`` events of a queue-reactive order book on one CPU core.

    Same arguments give the same output. Rates are per second. Raises
    ``ValueError`` naming the first argument out of range.
    """
    _check_int("n_events", n_events, 0, 2**62)
    _check_int("levels", levels, 1, 2**20)
    _check_int("seed", seed, 0, 2**64 - 1)
    _check_int("max_order_size", max_order_size, 1, _MAX_SIZE)
    _check_real("tick_size", tick_size, positive=True)
    _check_real("initial_bid", initial_bid, positive=True)
    if initial_bid / tick_size > 2**52:
        raise ValueError(
            f"initial_bid / tick_size must be at most 2**52 ticks, got {initial_bid / tick_size:g}"
        )
    _check_real("limit_rate", limit_rate, positive=True)
    _check_real("spread_limit_rate", spread_limit_rate, positive=True)
    _check_real("market_rate", market_rate)
    _check_real("cancel_rate", cancel_rate, positive=True)
    for name, value in (
        ("market_imbalance_bias", market_imbalance_bias),
        ("spread_imbalance_bias", spread_imbalance_bias),
        ("partial_cancel_prob", partial_cancel_prob),
    ):
        _check_real(name, value, at_most_one=True)
    # Fresh levels hold about limit_rate / cancel_rate orders of mean size.
    depth = limit_rate / cancel_rate * (max_order_size + 1) / 2
    if depth > _MAX_SIZE:
        raise ValueError(
            "limit_rate / cancel_rate * (max_order_size + 1) / 2, the mean size of a fresh level, "
            f"must be at most 2**40, got {depth:g}"
        )

    out = _allocate(n_events, levels)
    _C.lob_simulate_cpu(
        int(n_events), int(levels), int(seed),
        float(tick_size), float(initial_bid), float(limit_rate), float(spread_limit_rate),
        float(market_rate), float(market_imbalance_bias), float(spread_imbalance_bias),
        float(cancel_rate), float(partial_cancel_prob), int(max_order_size),
        *(t.data_ptr() for t in out),
    )  # fmt: skip
    return out


def _allocate(n_events: int, levels: int) -> LobSimulation:
    book = (n_events, levels)
    return LobSimulation(
        time=torch.empty(n_events, dtype=torch.int64),
        event=torch.empty(n_events, dtype=torch.int8),
        bid_price=torch.empty(book, dtype=torch.float64),
        bid_size=torch.empty(book, dtype=torch.float64),
        ask_price=torch.empty(book, dtype=torch.float64),
        ask_size=torch.empty(book, dtype=torch.float64),
        trade_price=torch.empty(n_events, dtype=torch.float64),
        trade_size=torch.empty(n_events, dtype=torch.float64),
        trade_side=torch.empty(n_events, dtype=torch.int8),
    )


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_real(name: str, value: object, *, positive: bool = False, at_most_one: bool = False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if at_most_one and value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")

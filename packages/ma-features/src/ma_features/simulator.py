"""A queue-reactive limit order book simulator whose imbalance and order flow
genuinely predict the next mid-price move (model and rates: docs/simulator.md).

The event loop runs in C++ (``ma_kernels.simulate_lob``); this module holds
the model's defaults and turns its output into :class:`~ma_features.Ticks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import ma_kernels

from .ticks import Ticks


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulator. Rates are per second; ``I`` is the level-1
    imbalance ``(bid_size - ask_size) / (bid_size + ask_size)``.

    The defaults give a large-tick book (spread one tick about 90% of the
    time) where the mid changes on about 2% of events, and the sign of ``I``
    calls the next mid move right about 75% of the time.

    Attributes:
        tick_size: price grid step.
        initial_bid: best bid at the start (rounded to the grid); the ask starts a tick above.
        limit_rate: limit orders arriving at each tracked price level of each side.
        spread_limit_rate: limit orders per side that improve the best quote by one
            tick, while the spread is wider than one tick.
        market_rate: market orders per side when ``I = 0``.
        market_imbalance_bias: ``b`` in [0, 1]: buy market orders arrive at
            ``market_rate * (1 + b * I)``, sells at ``market_rate * (1 - b * I)``,
            so they hit the thinner side more often.
        spread_imbalance_bias: the same for improvements of the bid (``1 + b * I``)
            and of the ask (``1 - b * I``) inside a wide spread.
        cancel_rate: cancellations per resting order (of mean size) per second, so
            a level's cancellation rate is proportional to its size.
        partial_cancel_prob: share of cancellations coded ``CANCEL`` rather than
            ``DELETE`` (the book is aggregated by level, so only the code differs).
        max_order_size: order sizes (limit, market, cancel) are uniform on 1..max_order_size.
    """

    tick_size: float = 0.01
    initial_bid: float = 100.0
    limit_rate: float = 5.0
    spread_limit_rate: float = 10.0
    market_rate: float = 5.0
    market_imbalance_bias: float = 0.5
    spread_imbalance_bias: float = 0.5
    cancel_rate: float = 0.5
    partial_cancel_prob: float = 0.2
    max_order_size: int = 200


def simulate(
    n_events: int, levels: int = 10, seed: int = 0, config: SimulatorConfig | None = None
) -> Ticks:
    """Simulates ``n_events`` events of a ``levels``-deep book, one Ticks row each.

    The same arguments give the same ticks on every run and machine. Time
    starts at 0 ns and is strictly increasing. Raises ``ValueError`` naming
    the first argument or config field out of range.
    """
    config = SimulatorConfig() if config is None else config
    out = ma_kernels.simulate_lob(n_events, levels, seed, **asdict(config))
    return Ticks(**{name: tensor.numpy() for name, tensor in out._asdict().items()})

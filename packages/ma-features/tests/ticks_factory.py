"""Random valid Ticks for tests: strictly ordered levels, empty deep levels, some trades."""

from __future__ import annotations

import numpy as np

from ma_features import Ticks


def random_ticks(seed: int, n: int, levels: int) -> Ticks:
    rng = np.random.default_rng(seed)
    time = np.sort(rng.integers(-(2**62), 2**62, n, dtype=np.int64))
    mid = rng.uniform(1e3, 1e4, (n, 1))  # prices stay positive through 99 levels
    gaps = rng.uniform(1e-3, 10.0, (n, levels))
    bid_price = mid - np.cumsum(gaps, axis=1)
    ask_price = mid + np.cumsum(rng.uniform(1e-3, 10.0, (n, levels)), axis=1)
    books = {}
    for side, price in (("bid", bid_price), ("ask", ask_price)):
        depth = rng.integers(0, levels + 1, (n, 1))
        empty = np.arange(levels) >= depth
        size = rng.uniform(1e-6, 1e6, (n, levels))
        size[empty] = 0.0
        price[empty] = np.nan
        books[f"{side}_price"], books[f"{side}_size"] = price, size
    trade = rng.random(n) < 0.3
    return Ticks(
        time=time,
        event=rng.integers(1, 8, n).astype(np.int8),
        trade_price=np.where(trade, rng.uniform(1.0, 1e4, n), 0.0),
        trade_size=np.where(trade, rng.uniform(1e-3, 1e4, n), 0.0),
        trade_side=np.where(trade, rng.integers(-1, 2, n), 0).astype(np.int8),
        **books,
    )

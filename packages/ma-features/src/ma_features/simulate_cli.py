"""``ma-simulate``: simulated ticks to a Parquet or CSV file.

Columns: ``time``, ``event``, ``bid_price_1 .. bid_price_K``, ``bid_size_*``,
``ask_price_*``, ``ask_size_*`` (level 1 is the best quote; an empty level is
a missing price and size 0), ``trade_price``, ``trade_size``, ``trade_side``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from .simulator import simulate
from .ticks import Ticks

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def _ticks_frame(ticks: Ticks) -> pd.DataFrame:
    """One row per event, one column per book level and side."""
    columns = {"time": ticks.time, "event": ticks.event}
    for name in ("bid_price", "bid_size", "ask_price", "ask_size"):
        book = getattr(ticks, name)
        for level in range(ticks.levels):
            columns[f"{name}_{level + 1}"] = book[:, level]
    for name in ("trade_price", "trade_size", "trade_side"):
        columns[name] = getattr(ticks, name)
    return pd.DataFrame(columns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ma-simulate",
        description="Simulate a queue-reactive limit order book (docs/simulator.md) "
        "with the default SimulatorConfig and write its ticks.",
    )
    parser.add_argument("--events", type=int, required=True, help="number of events (rows)")
    parser.add_argument("--levels", type=int, default=10, help="price levels per side")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same ticks")
    parser.add_argument(
        "--out", type=Path, required=True, help="output file: .parquet, .pq or .csv"
    )
    args = parser.parse_args(argv)
    fmt = FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        parser.error(f"--out must end in {', '.join(FORMATS)}; got {args.out.name!r}")

    start = time.perf_counter()
    try:
        ticks = simulate(args.events, levels=args.levels, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    simulated = time.perf_counter() - start
    frame = _ticks_frame(ticks)
    if fmt == "parquet":
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    rate = len(ticks) / simulated if simulated > 0 else float("inf")
    print(
        f"ma-simulate: {len(ticks):,} events x {args.levels} levels in {simulated:.2f} s "
        f"({rate / 1e6:.2f} M events/s); wrote {args.out} in "
        f"{time.perf_counter() - start - simulated:.2f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

"""``ma-simulate``: simulated ticks to a Parquet or CSV file, in the layout
of :mod:`ma_features.io` (read it back with ``read_parquet`` / ``read_csv``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .io import write_csv, write_parquet
from .simulator import simulate

WRITERS = {".parquet": write_parquet, ".pq": write_parquet, ".csv": write_csv}


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
    write = WRITERS.get(args.out.suffix.lower())
    if write is None:
        parser.error(f"--out must end in {', '.join(WRITERS)}; got {args.out.name!r}")

    start = time.perf_counter()
    try:
        ticks = simulate(args.events, levels=args.levels, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    simulated = time.perf_counter() - start
    write(ticks, args.out)
    rate = len(ticks) / simulated if simulated > 0 else float("inf")
    print(
        f"ma-simulate: {len(ticks):,} events x {args.levels} levels in {simulated:.2f} s "
        f"({rate / 1e6:.2f} M events/s); wrote {args.out} in "
        f"{time.perf_counter() - start - simulated:.2f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

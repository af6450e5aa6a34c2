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
# Deeper than any feed's book; the simulator's time and the file grow with it.
MAX_LEVELS = 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ma-simulate",
        description="Simulate a queue-reactive limit order book (docs/simulator.md) "
        "with the default SimulatorConfig and write its ticks.",
    )
    parser.add_argument("--events", type=int, required=True, help="number of events (rows)")
    parser.add_argument(
        "--levels", type=int, default=10, help=f"price levels per side (1 to {MAX_LEVELS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same ticks")
    parser.add_argument(
        "--out", type=Path, required=True, help="output file: .parquet, .pq or .csv"
    )
    args = parser.parse_args(argv)
    write = WRITERS.get(args.out.suffix.lower())
    if write is None:
        parser.error(f"--out must end in {', '.join(WRITERS)}; got {args.out.name!r}")
    # Every argument is checked before the simulation runs, in the flags' terms.
    if args.events < 1:
        parser.error(f"--events must be at least 1, got {args.events}")
    if not 1 <= args.levels <= MAX_LEVELS:
        parser.error(f"--levels must be between 1 and {MAX_LEVELS}, got {args.levels}")
    if args.seed < 0:
        parser.error(f"--seed must be at least 0, got {args.seed}")
    folder = args.out.parent
    if not folder.is_dir():
        parser.error(f"--out: no such directory {str(folder)!r}")
    existed = args.out.exists()
    try:  # the one sure test of writing is to open it
        args.out.open("ab").close()
    except OSError as e:
        parser.error(f"--out: cannot write {str(args.out)!r} ({e.strerror})")
    if not existed:
        args.out.unlink()

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

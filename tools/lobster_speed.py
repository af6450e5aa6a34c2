"""Time read_lobster on a generated LOBSTER pair: the shipped sample repeated to N rows.

    python tools/lobster_speed.py [rows] [dir]

Each copy of the sample is shifted 50 s later (the sample spans 49.1 s), so time stays
non-decreasing. Prints rows/s of the reader as it runs and of its string-parsing path alone.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ma_features import lobster, lobster_sample_paths, read_lobster


def write_repeated_sample(directory: Path, rows: int) -> Path:
    """``X_message_10.csv`` and ``X_orderbook_10.csv`` of ``rows`` rows; the message path."""
    message, book = (p.read_text().splitlines() for p in lobster_sample_paths())
    copies = -(-rows // len(message))
    out_message, out_book = [], []
    for k in range(copies):
        for line in message:
            seconds, rest = line.split(".", 1)
            out_message.append(f"{int(seconds) + 50 * k}.{rest}")
        out_book.extend(book)
    m = directory / "X_message_10.csv"
    m.write_text("\n".join(out_message[:rows]) + "\n")
    (directory / "X_orderbook_10.csv").write_text("\n".join(out_book[:rows]) + "\n")
    return m


def best_of(repeats: int, read) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as d:
        m = write_repeated_sample(Path(d), rows)
        assert len(read_lobster(m)[0]) == rows
        fast = best_of(3, lambda: read_lobster(m))
        lobster_fast = lobster._read_fast
        lobster._read_fast = lambda *args: None  # force the string-parsing path
        try:
            slow = best_of(3, lambda: read_lobster(m))
        finally:
            lobster._read_fast = lobster_fast
    print(
        f"{rows} rows, 10 levels: {rows / fast:,.0f} rows/s ({fast:.2f} s); "
        f"string path alone {rows / slow:,.0f} rows/s ({slow:.2f} s)"
    )


if __name__ == "__main__":
    main()

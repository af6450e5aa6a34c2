"""Feeds: where a stream of ticks comes from.

``replay`` plays recorded ticks of several instruments (LOBSTER, Parquet or
CSV files, or ``Ticks``) merged by time, at full speed or paced by their
timestamps, as the ``(ticks, instruments)`` batches ``StreamEngine.push``
takes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

import ma_features


def replay(
    sources: Sequence[ma_features.Ticks | str | Path],
    *,
    speed: float | None = None,
    batch: int = 1,
    clock=time.perf_counter,
    sleep=time.sleep,
) -> Iterator[tuple[ma_features.Ticks, np.ndarray]]:
    """Batches of up to ``batch`` ticks in time order; instrument ``i`` is
    ``sources[i]`` (a file for ``ma_features.read_ticks``, or Ticks).

    Ticks at the same time keep the order of their sources, then each
    source's own order. ``speed``: None plays at full speed; 1.0 at the
    recorded pace (a batch is yielded no earlier than its first tick's time
    after the first tick, as wall time); 10.0 ten times faster. ``clock`` and
    ``sleep`` are the wall clock's (tests pass their own).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if speed is not None and not (isinstance(speed, (int, float)) and 0 < speed < float("inf")):
        raise ValueError(f"speed must be None or a positive number, got {speed!r}")
    if not sources:
        raise ValueError("replay needs at least one source")
    parts = [s if isinstance(s, ma_features.Ticks) else ma_features.read_ticks(s)[0]
             for s in sources]
    levels = sorted({p.levels for p in parts})
    if len(levels) > 1:
        raise ValueError(f"the sources have different book levels {levels}: read them with "
                         "the same number of levels")
    merged = ma_features.Ticks.concat(parts)
    instruments = np.concatenate([np.full(len(p), i, dtype=np.int64)
                                  for i, p in enumerate(parts)])
    order = np.argsort(merged.time, kind="stable")  # stable: ties keep source, then row order
    start_wall = clock()
    for first in range(0, len(order), batch):
        rows = order[first : first + batch]
        if speed is not None:
            due = (merged.time[rows[0]] - merged.time[order[0]]) * 1e-9 / speed
            wait = start_wall + due - clock()
            if wait > 0:
                sleep(wait)
        yield merged[rows], instruments[rows]

"""The window sums of book_features' CUDA window kernel (window_columns_kernel
in packages/ma-kernels/csrc/cuda/book_features.cu), emulated in Python with
tiny tiles and warps, against brute-force window sums: a quick check of the
logic (one span for the near windows and for the far windows' rows that
start in it, the other rows by their window's walk: starts, trails,
whole-tile totals) before a change reaches a GPU.

    python3 tools/emulate_window_walk.py
"""

from __future__ import annotations

import numpy as np

TILE, LANES = 8, 4  # rows per tile, lanes per warp (256 threads x 2 rows and 32 on the GPU)
HALO = TILE // 2  # how far before its tile a near window starts (kHaloRows)


def time_window_start(time: np.ndarray, a: int, tau: int) -> int:
    """time_window_start: lanes probe rows, steps growing then shrinking LANES-fold."""
    inside, step, growing = a, 1, True
    while True:
        probes = inside - (np.arange(LANES) + 1) * step
        count = sum(j >= 0 and time[a] - time[j] < tau for j in probes)
        inside -= count * step
        if count == LANES and growing:
            step *= LANES
            continue
        growing = False
        if step == 1:
            return inside
        step //= LANES


def first_slot_inside(times, lo: int, hi: int, now: int, tau: int) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if now - times[mid] >= tau else (lo, mid)
    return lo


def tile_sums(x, time, own, span0, length=None, tau=None, totals=None) -> np.ndarray:
    """The window sums of tile `own`'s rows, as the kernel takes them. The
    span [s, b) starts at span0 (the other windows' earliest near start, or
    the tile) or at this window's start where it is near; every row whose
    window starts in the span is summed from the span's scan, the others
    by the window's walk over the pieces before the span."""
    n = len(x)
    a, b = own * TILE, min(own * TILE + TILE, n)
    timed = tau is not None
    s0 = time_window_start(time, a, tau) if timed else max(0, a - length + 1)
    near = s0 >= a - HALO
    span = min(span0, s0) if near else span0
    prefix, times = np.cumsum(x[span:b]), time[span:b]

    def at(slot):
        return prefix[slot] if slot >= 0 else 0.0

    out, tile_prefix = {}, {t: at(t - span) for t in range(a, b)}
    for t in range(a, b):
        start = None if timed else max(0, t - length + 1)
        if near or (time[t] - times[0] >= tau if timed else start >= span):
            frm = (first_slot_inside(times, s0 - span if near else 0, t - span, time[t], tau)
                   if timed else start - span)
            out[t] = at(t - span) - at(frm - 1)
    if near:
        return np.array([out[t] for t in range(a, b)])
    s1 = time_window_start(time, b - 1, tau) if timed else max(0, b - length)
    starts = {t: -1 if timed else max(0, t - length + 1) for t in range(a, b)}
    trail = dict.fromkeys(range(a, b), 0.0)
    carry = 0.0
    g = s0 // TILE
    while g * TILE < span:
        p = g * TILE
        g += 1
        if totals is not None and p // TILE > s1 // TILE:  # no start in the tile: its total,
            carry += totals[p // TILE] - (at(p + TILE - 1 - span) if p + TILE > span else 0.0)
            continue  # less its rows in the span
        last = min(p + TILE, span) - 1
        rows = range(p, p + TILE)
        piece = carry + np.cumsum([x[r] if s0 <= r < span else 0.0 for r in rows])
        piece_times = [time[r] if s0 <= r < span else 0 for r in rows]
        before, carry = carry, piece[-1]
        for t in range(a, b):
            if t in out:
                continue
            if timed and starts[t] < 0 and time[t] - piece_times[last - p] < tau:
                starts[t] = p + first_slot_inside(piece_times, max(p, s0) - p, last - p, time[t],
                                                  tau)
            if p <= starts[t] <= last:
                trail[t] = before if starts[t] == p else piece[starts[t] - 1 - p]
    for t in range(a, b):
        if t not in out:
            out[t] = carry - (carry if starts[t] < 0 else trail[t]) + tile_prefix[t]
    return np.array([out[t] for t in range(a, b)])


def main(trials: int = 300, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        n = int(rng.integers(1, 90))
        x, time = rng.normal(size=n), np.cumsum(rng.integers(0, 4, size=n))  # repeated times
        length, tau = int(rng.integers(1, 60)), int(rng.integers(1, 80))
        totals = np.add.reduceat(x, np.arange(0, n, TILE))
        for own in range(-(-n // TILE)):
            rows = range(own * TILE, min(own * TILE + TILE, n))
            by_length = [x[max(0, t - length + 1): t + 1].sum() for t in rows]
            by_time = [x[: t + 1][time[t] - time[: t + 1] < tau].sum() for t in rows]
            span0 = max(0, own * TILE - int(rng.integers(0, HALO + 1)))  # other near windows
            for whole_tiles in (None, totals):
                np.testing.assert_allclose(tile_sums(x, time, own, span0, length=length,
                                                     totals=whole_tiles), by_length, atol=1e-12)
                np.testing.assert_allclose(tile_sums(x, time, own, span0, tau=tau,
                                                     totals=whole_tiles), by_time, atol=1e-12)
    print(f"span and walk give the brute-force sums on {trials} random series")


if __name__ == "__main__":
    main()

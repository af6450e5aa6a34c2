"""The window sums of book_features' CUDA window kernel (window_columns_kernel
in packages/ma-kernels/csrc/cuda/book_features.cu), emulated in Python with
tiny tiles and warps, against brute-force window sums: a quick check of the
logic (near windows from one span, far windows by their walk: starts,
trails, whole-tile totals) before a change reaches a GPU.

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


def tile_sums(x, time, own, length=None, tau=None, totals=None) -> np.ndarray:
    """The window sums of tile `own`'s rows, as the kernel takes them: from
    the span's scan for a near window, else by its walk."""
    n = len(x)
    a, b = own * TILE, min(own * TILE + TILE, n)
    timed = tau is not None
    s0 = time_window_start(time, a, tau) if timed else max(0, a - length + 1)
    if s0 >= a - HALO:  # near (alone here: the kernel's span starts at the earliest near s0)
        prefix = np.cumsum(x[s0:b])
        times = time[s0:b]
        sums = []
        for t in range(a, b):
            start = (s0 + first_slot_inside(times, 0, t - s0, time[t], tau) if timed
                     else max(0, t - length + 1))
            sums.append(prefix[t - s0] - (prefix[start - 1 - s0] if start > s0 else 0.0))
        return np.array(sums)
    s1 = time_window_start(time, b - 1, tau) if timed else max(0, b - length)
    starts = {t: -1 if timed else max(0, t - length + 1) for t in range(a, b)}
    trail = dict.fromkeys(range(a, b), 0.0)
    carry = 0.0
    for g in range(s0 // TILE, own + 1):
        if totals is not None and s1 // TILE < g < own:
            carry += totals[g]
            continue
        p, last = g * TILE, min(g * TILE + TILE, b) - 1
        rows = range(p, p + TILE)
        prefix = carry + np.cumsum([x[r] if s0 <= r < b else 0.0 for r in rows])
        times = [time[r] if s0 <= r < b else 0 for r in rows]
        before, carry = carry, prefix[-1]
        for t in range(a, b):
            if timed and starts[t] < 0 and (last >= t or time[t] - times[last - p] < tau):
                starts[t] = p + first_slot_inside(times, max(p, s0) - p, min(t, last) - p,
                                                  time[t], tau)
            if p <= starts[t] <= last:
                trail[t] = before if starts[t] == p else prefix[starts[t] - 1 - p]
    return np.array([prefix[t - a] - trail[t] for t in range(a, b)])


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
            for whole_tiles in (None, totals):
                np.testing.assert_allclose(tile_sums(x, time, own, length=length,
                                                     totals=whole_tiles), by_length, atol=1e-12)
                np.testing.assert_allclose(tile_sums(x, time, own, tau=tau, totals=whole_tiles),
                                           by_time, atol=1e-12)
    print(f"span and walk give the brute-force sums on {trials} random series")


if __name__ == "__main__":
    main()

"""A design for book_features' far windows on CUDA, emulated in Python before
any CUDA is written (packages/ma-kernels/notes/microstructure.md, "Where the
2x / 1.5x floor targets stand"): blocks persistent over consecutive tiles
keep each recent tile's local prefix sums in a ring (shared memory on the
GPU), so a window that starts tiles back reads its start's prefix instead of
scanning that tile again. Checked against exact sums (math.fsum) on random
series, one of them built to defeat a plain running prefix.

A block walks its tiles g in order, starting RING - 1 tiles early (warm-up:
those tiles fill the ring, nothing is written). For tile g it keeps:

  L_g(t)  the sum of the terms of rows [g TILE, t] (a block scan),
  T_g     the tile's total, L_g at its last row,
  B_g     the sum of the totals of the block's tiles before g, in
          double-double (B_{g+1} = B_g + T_g, no rounding lost).

The sum over the window [s, t] of row t (tile g), s in tile h:

  L_g(t) - L_h(s - 1) + (B_g - B_h)          (L_h(h TILE - 1) = 0)

where the base difference is taken in double-double and rounded once: the
sums are as precise as the window and two tiles, however long the series or
the block's walk. Where h has left the ring (g - h >= RING) or lies before
the block's warm-up, the tile overflows: every row of it is recomputed by the
present kernel (window_columns_kernel, its tiles listed by this one, the
totals T_g it needs written by this one as it walks).

    python3 tools/emulate_window_ring.py
"""

from __future__ import annotations

import math

import numpy as np

TILE, RING = 8, 4  # rows per tile, tiles in a block's ring (512 and 6 on the GPU)


def two_sum(a: float, b: float) -> tuple[float, float]:
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def dd_add(x: tuple[float, float], y: float) -> tuple[float, float]:
    s, e = two_sum(x[0], y)
    return two_sum(s, e + x[1])


def dd_difference(x: tuple[float, float], y: tuple[float, float]) -> float:
    """x - y rounded once."""
    s, e = two_sum(x[0], -y[0])
    return s + (e + (x[1] - y[1]))


def window_starts(time: np.ndarray, length: int | None, tau: int | None) -> np.ndarray:
    """Each row's first row in its window: the GPU's starts kernel (a
    thread's consecutive rows walk forward from one binary search)."""
    rows = np.arange(len(time))
    if tau is None:
        return np.maximum(0, rows - length + 1)
    return np.searchsorted(time, time - tau, side="right")  # first j with time_t - time_j < tau


def block_sums(x: np.ndarray, starts: np.ndarray, first: int, last: int):
    """The window sums of the rows of tiles [first, last), as one persistent
    block takes them; None for a row of an overflowing tile. Also the tiles'
    totals (the fallback's input)."""
    n = len(x)
    out: dict[int, float | None] = {}
    totals = {}
    ring: dict[int, tuple[np.ndarray, tuple[float, float]]] = {}  # tile -> (L, B)
    base = (0.0, 0.0)
    for g in range(max(0, first - (RING - 1)), last):
        a, b = g * TILE, min(g * TILE + TILE, n)
        local = np.cumsum(x[a:b])  # the block scan (its order does not matter here)
        ring[g] = (local, base)
        ring.pop(g - RING, None)
        assert len(ring) <= RING  # what the GPU's shared memory holds
        totals[g] = local[-1]
        if g >= first:
            rows = range(a, b)
            tiles = [starts[t] // TILE for t in rows]
            if any(h not in ring for h in tiles):
                out.update(dict.fromkeys(rows, None))  # overflow: the whole tile falls back
            else:
                for t, h in zip(rows, tiles, strict=True):
                    s = starts[t]
                    trail_local, trail_base = ring[h]
                    trail = trail_local[s - 1 - h * TILE] if s > h * TILE else 0.0
                    out[t] = local[t - a] - trail + dd_difference(base, trail_base)
        base = dd_add(base, local[-1])
    return out, totals


def main(trials: int = 400, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    overflowed = served = 0
    for trial in range(trials):
        n = int(rng.integers(1, 200))
        x = rng.normal(size=n)
        if trial % 4 == 0:  # a huge early run: a plain running prefix loses the small sums after it
            x[: n // 3] *= 1e12
        time = np.cumsum(rng.integers(0, 4, size=n))  # repeated times
        length, tau = int(rng.integers(1, 40)), int(rng.integers(1, 60))
        tiles = -(-n // TILE)
        cuts = np.unique(np.r_[0, np.sort(rng.integers(0, tiles + 1, size=3)), tiles])
        for starts in (window_starts(time, length, None), window_starts(time, None, tau)):
            exact = [math.fsum(x[s: t + 1]) for t, s in enumerate(starts)]
            for first, last in zip(cuts[:-1], cuts[1:], strict=True):  # the blocks' segments
                out, totals = block_sums(x, starts, first, last)
                for g in range(first, last):  # the fallback's totals
                    assert math.isclose(totals[g], math.fsum(x[g * TILE: (g + 1) * TILE]),
                                        rel_tol=1e-12, abs_tol=1e-12 * np.abs(x).sum())
                for t, value in out.items():
                    g = t // TILE
                    if value is None:  # some row of the tile starts before the ring
                        overflowed += 1
                        oldest = max(0, first - RING + 1, g - RING + 1)
                        assert min(starts[g * TILE: (g + 1) * TILE]) // TILE < oldest
                        continue
                    served += 1
                    scale = math.fsum(abs(v) for v in x[starts[t] // TILE * TILE: (g + 1) * TILE])
                    assert abs(value - exact[t]) <= 1e-14 * scale, (trial, t, value, exact[t])
    print(f"ring sums match exact ones on {trials} random series "
          f"({served} rows served, {overflowed} left to the fallback)")


if __name__ == "__main__":
    main()

"""Latency measurement of a per-tick step: wall time per call, summarised by
the percentiles that matter for a live stream (p50, p99, p99.9, worst)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call wall times, in microseconds."""

    count: int
    mean_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float

    @classmethod
    def from_ns(cls, samples_ns: list[int] | torch.Tensor) -> LatencyStats:
        t = torch.as_tensor(samples_ns, dtype=torch.float64) / 1e3
        if t.numel() == 0:
            raise ValueError("LatencyStats needs at least one sample")
        q = torch.quantile(t, torch.tensor([0.5, 0.9, 0.99, 0.999], dtype=torch.float64))
        return cls(t.numel(), t.mean().item(), *q.tolist(), t.max().item())

    def __str__(self) -> str:
        return (
            f"p50 {self.p50_us:.1f} us, p90 {self.p90_us:.1f} us, p99 {self.p99_us:.1f} us, "
            f"p99.9 {self.p999_us:.1f} us, max {self.max_us:.1f} us over {self.count} calls"
        )


def measure_latency(
    step: Callable[[int], object], calls: int, *, warmup: int = 10, sync: bool = False,
    progress: str | None = None, samples: list[int] | None = None,
) -> LatencyStats:
    """Times ``calls`` calls ``step(i)`` after ``warmup`` untimed ones; every
    call gets its own ``i``: ``0 .. warmup - 1`` the warm-up, then ``warmup
    .. warmup + calls - 1`` (a step that consumes input never sees it twice).

    With ``sync=True`` each call is followed by ``torch.cuda.synchronize()``
    inside the timed region: the wall time a caller waits for a GPU result.
    ``progress``: a label for a progress line on a terminal's stderr (drawn
    between calls, at most 5 times a second, outside the timed region).
    ``samples``: a list that receives every call's time in ns (for a histogram).
    """
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    for i in range(warmup):
        step(i)
    if sync:
        torch.cuda.synchronize()
    draw = _progress(progress, calls)
    samples = [] if samples is None else samples
    for i in range(calls):
        start = time.perf_counter_ns()
        step(warmup + i)
        if sync:
            torch.cuda.synchronize()
        samples.append(time.perf_counter_ns() - start)
        draw(i + 1)
    return LatencyStats.from_ns(samples)


def _progress(label: str | None, total: int) -> Callable[[int], None]:
    if label is None or not sys.stderr.isatty():
        return lambda done: None
    last = [0.0]

    def draw(done: int) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        fill = 24 * done // total
        sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (24 - fill)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return draw

"""Latency measurement of a per-tick step: wall time per call, summarised by
the percentiles that matter for a live stream (p50, p99, worst)."""

from __future__ import annotations

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
    max_us: float

    @classmethod
    def from_ns(cls, samples_ns: list[int] | torch.Tensor) -> LatencyStats:
        t = torch.as_tensor(samples_ns, dtype=torch.float64) / 1e3
        if t.numel() == 0:
            raise ValueError("LatencyStats needs at least one sample")
        q = torch.quantile(t, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
        return cls(t.numel(), t.mean().item(), *q.tolist(), t.max().item())

    def __str__(self) -> str:
        return (
            f"p50 {self.p50_us:.1f} us, p90 {self.p90_us:.1f} us, p99 {self.p99_us:.1f} us, "
            f"max {self.max_us:.1f} us over {self.count} calls"
        )


def measure_latency(
    step: Callable[[int], object], calls: int, *, warmup: int = 10, sync: bool = False
) -> LatencyStats:
    """Times ``step(i)`` for ``i`` in ``range(calls)`` after ``warmup`` untimed calls.

    With ``sync=True`` each call is followed by ``torch.cuda.synchronize()``
    inside the timed region: the wall time a caller waits for a GPU result.
    """
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    for i in range(warmup):
        step(i)
    if sync:
        torch.cuda.synchronize()
    samples = []
    for i in range(calls):
        start = time.perf_counter_ns()
        step(i)
        if sync:
            torch.cuda.synchronize()
        samples.append(time.perf_counter_ns() - start)
    return LatencyStats.from_ns(samples)

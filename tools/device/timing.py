"""What the GPU benchmark scripts share: CUDA-event timing and the header
that says where and on what a result was measured."""

from __future__ import annotations

import os
import platform
import statistics

import torch

import ma_kernels


def environment() -> dict:
    """GPU, versions and commit (MA_COMMIT, as the device copy has no .git)."""
    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "ma_kernels": ma_kernels.__version__,
        "python": platform.python_version(),
        "commit": os.environ.get("MA_COMMIT", "unknown"),
    }


def median_ms(fn, warmup: int = 5, reps: int = 50, budget_ms: float = 3000,
              calls: int = 1) -> float:
    """Median milliseconds of ``fn()`` over up to ``reps`` runs, each timed by
    CUDA events; a slow peer gets fewer runs (at least 5) to fit ``budget_ms``.

    calls=1 waits for the GPU after each call: the latency of one call, host
    work and kernels in series. calls=N times N calls back to back and divides
    by N: the host queues work while the GPU runs, as in a training loop, so
    the figure is whichever of the two is slower."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    while len(times) < reps and (len(times) < 5 or sum(times) * calls < budget_ms):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)

"""One call of book_features per benchmarked spec on the benchmark's inputs,
for Nsight Compute (run.sh, PROFILE=1): ncu -k regex:columns python3 this_file
[spec ...] (default: every spec of bench_features.SPECS)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import SPECS  # noqa: E402

import ma_kernels  # noqa: E402
from benchmarks.common import random_series  # noqa: E402

for name in sys.argv[1:] or SPECS:
    spec, levels, divisor = SPECS[name]
    series = random_series(50_000_000 // divisor, levels=levels, device="cuda")
    ma_kernels.book_features(**series, **spec, dtype=torch.float32)
    del series
torch.cuda.synchronize()

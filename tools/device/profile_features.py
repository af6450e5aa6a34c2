"""One call of each feature kernel on the benchmark's inputs, for Nsight
Compute (run.sh, PROFILE=1): ncu -k regex:features python3 this_file."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import ma_kernels  # noqa: E402
from benchmarks.bench_features import BOOK_SPEC, WINDOW  # noqa: E402
from benchmarks.common import random_series, random_table  # noqa: E402

table = random_table(50_000_000, device="cuda")
ma_kernels.l1_features(table[:, :4])
ma_kernels.microstructure_features(table, WINDOW)
del table
ma_kernels.book_features(**random_series(10_000_000, device="cuda"), **BOOK_SPEC,
                         dtype=torch.float32)
torch.cuda.synchronize()

"""Where a training step of the benchmark model spends its GPU time, per
attention kind: torch.profiler over a few steps, CUDA kernels by total time.

``python tools/device/profile_training.py --out profile.txt`` (run.sh,
PROFILE=1). The model and batch are bench_training.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_training import anchors_config  # tools/device/, the script's own folder
from torch.profiler import ProfilerActivity, profile

import ma_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    cfg = anchors_config(256)
    report = []
    for kind in ma_model.ATTENTION_KINDS:
        ma_model.benchmark_steps(cfg, kind, 2, device="cuda")  # compile and warm up
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            ma_model.benchmark_steps(cfg, kind, args.steps, device="cuda", warmup=0)
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows)
        report.append(f"===== {kind}: {args.steps} steps\n{table}")
        print(report[-1].splitlines()[0], flush=True)
    args.out.write_text("\n".join(report))


if __name__ == "__main__":
    main()

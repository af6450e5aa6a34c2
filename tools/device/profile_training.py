"""Where a training step of the benchmark model spends its GPU time, per
attention kind: torch.profiler over a few steps, CUDA kernels by total time
and host operations by their own time.

``python tools/device/profile_training.py --out profile.txt`` (run.sh,
PROFILE=1). The model and batch are bench_training.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_training import anchors_config, dilations_arg  # tools/device/, the script's own folder
from torch.profiler import ProfilerActivity, profile

import ma_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--dilations", type=dilations_arg, default=(1, 1, 1, 1))
    parser.add_argument("--compile", choices=ma_model.COMPILE_MODES, default=False,
                        help="the model through torch.compile in this mode")
    parser.add_argument("--kinds", nargs="+", choices=ma_model.ATTENTION_KINDS,
                        default=ma_model.ATTENTION_KINDS)
    parser.add_argument("--traces", type=Path,
                        help="also write a Chrome trace per kind into this folder")
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    cfg = anchors_config(256, args.dilations)
    report = []
    for kind in args.kinds:
        # Compile and warm up; then the profiled call compiles nothing (same shapes).
        ma_model.benchmark_steps(cfg, kind, 2, device="cuda", compile=args.compile)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            ma_model.benchmark_steps(cfg, kind, args.steps, device="cuda", warmup=0,
                                     compile=args.compile)
        if args.traces:
            args.traces.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(args.traces / f"training_{kind}.json"))
        events = prof.key_averages()
        kernels = events.table(sort_by="self_cuda_time_total", row_limit=args.rows)
        host = events.table(sort_by="self_cpu_time_total", row_limit=args.rows // 2)
        report.append(f"===== {kind}, dilations {args.dilations}, compile {args.compile}: "
                      f"{args.steps} steps\n{kernels}\n{host}")
        print(report[-1].splitlines()[0], flush=True)
    args.out.write_text("\n".join(report))


if __name__ == "__main__":
    main()

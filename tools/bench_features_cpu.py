"""Interleaved CPU timings of the asv classes ModelInputsCPU and
ModelInputsWindowsCPU (benchmarks/bench_features.py: ma_kernels.book_features
against pandas and torch eager, the peers checked against the op first), on
5 million level-1 ticks: every implementation once per round, min and median
over the rounds, ratios to ours, the machine's load. Writes one JSON file.

    python tools/bench_features_cpu.py --out benchmarks/results/features-cpu-COMMIT.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_features import ModelInputsCPU, ModelInputsWindowsCPU  # noqa: E402

IMPLEMENTATIONS = ("ma_kernels", "pandas", "torch_eager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ticks", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    benches = {cls.__name__: cls() for cls in (ModelInputsCPU, ModelInputsWindowsCPU)}
    for bench in benches.values():
        bench.setup(args.ticks)
        for name in IMPLEMENTATIONS:  # a warm-up call each
            getattr(bench, f"time_{name}")(args.ticks)
    times = {(b, name): [] for b in benches for name in IMPLEMENTATIONS}
    loads = []
    for _ in range(args.rounds):
        for b, bench in benches.items():
            for name in IMPLEMENTATIONS:
                gc.collect()
                start = time.perf_counter()
                getattr(bench, f"time_{name}")(args.ticks)
                times[b, name].append((time.perf_counter() - start) * 1e3)
        loads.append(os.getloadavg()[0])
    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "ticks": args.ticks,
              "load_after_each_round": loads, "commit": os.environ.get("MA_COMMIT", "unknown"),
              "results": {}}
    for b in benches:
        ours = times[b, "ma_kernels"]
        report["results"][b] = {name: {
            "ms": times[b, name], "min_ms": min(times[b, name]),
            "median_ms": statistics.median(times[b, name]),
            "ratio_to_ours_min": min(times[b, name]) / min(ours),
            "ratio_to_ours_median": statistics.median(times[b, name]) / statistics.median(ours),
        } for name in IMPLEMENTATIONS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for b, result in report["results"].items():
        for name, r in result.items():
            print(f"{b:22s} {name:12s} min {r['min_ms']:8.1f} ms  median {r['median_ms']:8.1f} ms"
                  f"  x ours {r['ratio_to_ours_min']:5.1f} / {r['ratio_to_ours_median']:5.1f}")
    print("load after each round:", [round(x, 2) for x in loads])


if __name__ == "__main__":
    main()

"""The GPU time of each kernel of an engine push, by torch.profiler, for the
ANCHORS model at N instruments (eager mode: every stage its own launch; the
graph mode's replays show the same kernels): where a round's device time
goes outside the model kernel.

    python3 tools/device/profile_kernels.py [instruments] [--mode graph] [--out table.txt]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from ma_runtime.bench import anchors_engine, simulated_pushes

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("instruments", type=int, nargs="?", default=256)
parser.add_argument("--pushes", type=int, default=20)
parser.add_argument("--warmup", type=int, default=300,
                    help="pushes first: past the window (256), so attention reads it all")
parser.add_argument("--mode", choices=("eager", "graph"), default="eager")
parser.add_argument("--out", type=Path)
args = parser.parse_args()
engine = anchors_engine(args.instruments, "cuda", mode=args.mode)
pushes = simulated_pushes(args.warmup + args.pushes, args.instruments, engine.levels)
for ticks, ids in pushes[:args.warmup]:
    engine.push(ticks, np.asarray(ids))
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    for ticks, ids in pushes[args.warmup:]:
        engine.push(ticks, np.asarray(ids))
    torch.cuda.synchronize()
table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
print(f"{args.instruments} instruments, {args.mode}, {args.pushes} pushes\n{table}")
if args.out:
    args.out.write_text(table + "\n")

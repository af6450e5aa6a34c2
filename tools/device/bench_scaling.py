"""Data-parallel scaling of MA-Transformer training: the model of ANCHORS.md
(bench_training.py) at L = 4096, W = 256, one global batch, on 1 process and
on N, measured in one run.

Run as a script, it launches ``torchrun --nproc_per_node P`` for P = 1 and
P = N (NCCL with NVLink multicast off on GPUs, gloo on CPUs), each process
taking 1/P of the same global batch; it writes the throughput of both, the
speedup, and how far apart their loss curves are, step by step.

    python tools/device/bench_scaling.py --out scaling.json            # all GPUs
    python tools/device/bench_scaling.py --out s.json --device cpu --processes 2 \\
        --length 64 --window 8 --batch 4 --steps 5 --mode eager         # a CPU check

Each step is by default compiled and replayed as one CUDA graph (``--mode
graph``, as in bench_training.py): one GPU's step is otherwise paced by the
host, which splitting the batch does not speed up.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from bench_training import MODES, anchors_config, step_options
from timing import environment

import ma_model

# NVLink SHARP (multicast) stays off on the lent machines.
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: its share of every step; rank 0 writes the result."""
    run = ma_model.benchmark_steps(
        anchors_config(args.window), "ma", args.steps, batch=args.batch, length=args.length,
        device=args.device, warmup=args.warmup, bf16=args.precision == "bf16",
        **step_options(args.mode),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.write_text(json.dumps(run) + "\n")
    if dist.is_initialized():
        gc.collect()  # frees the DDP wrapper, so the group's threads end before exit
        dist.destroy_process_group()


def launch(args: argparse.Namespace, processes: int, out: Path) -> dict:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", __file__, "--worker", "--out", str(out),
        *(f"--{k}={getattr(args, k)}" for k in (
            "device", "steps", "warmup", "batch", "length", "window", "precision", "mode")),
    ]
    env = {**os.environ, **NCCL_ENV, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())


def compare(one: dict, many: dict) -> dict:
    a, b = torch.tensor(one["losses"]), torch.tensor(many["losses"])
    difference = (a - b).abs()
    return {
        "speedup": many["ticks_per_s"] / one["ticks_per_s"],
        "efficiency": many["ticks_per_s"] / one["ticks_per_s"] / many["processes"],
        "loss_steps_compared": len(a),
        "max_abs_loss_difference": difference.max().item(),
        "max_rel_loss_difference": (difference / a.abs()).max().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--processes", type=int, default=None,
                        help="processes of the parallel run (default: every GPU)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps, after warm-up")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--mode", choices=MODES, default="graph",
                        help="how each step runs (bench_training.py's --modes)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    processes = args.processes or torch.cuda.device_count()
    if processes < 2:
        raise SystemExit(f"scaling needs 2 or more processes; this machine gives {processes}")
    with tempfile.TemporaryDirectory() as tmp:
        one = launch(args, 1, Path(tmp) / "one.json")
        many = launch(args, processes, Path(tmp) / "many.json")
    report = {**environment(), "config": {k: getattr(args, k) for k in (
        "device", "steps", "warmup", "batch", "length", "window", "precision", "mode")},
        "one": one, "many": many, **compare(one, many)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"scaling, {report['gpu']} ({args.device}): 1 process {one['ms_per_step']:.2f} ms/step, "
          f"{processes} processes {many['ms_per_step']:.2f} ms/step: {report['speedup']:.2f}x; "
          f"loss curves over {report['loss_steps_compared']} steps differ by at most "
          f"{report['max_rel_loss_difference']:.2e} (relative)")


if __name__ == "__main__":
    main()

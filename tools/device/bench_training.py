"""Training throughput of the MA-Transformer on the GPU against the same model
with dense SDPA attention and with FlexAttention, measured in one run.

The model of ANCHORS.md: d_model 128, 4 heads, 4 pre-norm layers, MLP 4x,
window 256, a 3-class head on every position; L = 4096, batch 16; bf16
autocast, fused AdamW; one step = forward + backward + optimizer. Each kind
runs in processes of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from timing import environment

import ma_model


def anchors_config(window: int) -> ma_model.Config:
    return ma_model.config_from_dict(
        {
            "model": {
                "model_dim": 128,
                "num_heads": 4,
                "num_layers": 4,
                "window": window,
                "dilations": [1, 1, 1, 1],
                "mlp_ratio": 4,
                "num_horizons": 1,
            },
            "data": {"horizons": [10]},
        }
    )


def measure(kind: str, args: argparse.Namespace) -> dict:
    """One kind's steps in this process: ``benchmark_steps`` of the ANCHORS model."""
    # FlexAttention recompiles per mask shape; allow it rather than fall back to eager.
    torch._dynamo.config.cache_size_limit = 64
    return ma_model.benchmark_steps(anchors_config(args.window), kind, args.steps,
                                    batch=args.batch, length=args.length, device="cuda")


def measure_apart(kind: str, args: argparse.Namespace) -> dict:
    """``measure`` in a fresh process: in one process, a kind measured after
    the others ran ~20% slower than in its first round (allocator and
    compile state carry over), so each round of each kind starts clean."""
    command = [sys.executable, __file__, "--one", kind, "--out", "-", "--steps", str(args.steps),
               "--length", str(args.length), "--window", str(args.window),
               "--batch", str(args.batch)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--one", choices=ma_model.ATTENTION_KINDS,
                        help="measure this kind here and print its result (used by the rounds)")
    args = parser.parse_args()
    if args.one:
        result = measure(args.one, args)
        print(json.dumps({k: v for k, v in result.items() if k != "losses"}))
        return
    # Rounds interleave the kinds, so a slow spell of the machine hits them all;
    # each kind's figure is the median of its rounds' median steps.
    rounds = {kind: [] for kind in ma_model.ATTENTION_KINDS}
    for _ in range(args.rounds):
        for kind in ma_model.ATTENTION_KINDS:
            rounds[kind].append(measure_apart(kind, args))
    runs = {}
    for kind, results in rounds.items():
        ms = statistics.median(r["ms_per_step"] for r in results)
        runs[kind] = {
            **results[0],
            "ms_per_step": ms,
            "ticks_per_s": args.batch * args.length / (ms / 1e3),
            "rounds_ms_per_step": [r["ms_per_step"] for r in results],
        }
    faster_peer = min(runs["sdpa_dense"]["ms_per_step"], runs["flex"]["ms_per_step"])
    report = {
        **environment(),
        "config": {
            "batch": args.batch,
            "length": args.length,
            "window": args.window,
            "model_dim": 128,
            "heads": 4,
            "layers": 4,
        },
        "runs": runs,
        "speedup_vs_faster_peer": faster_peer / runs["ma"]["ms_per_step"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"training, {report['gpu']}, L={args.length} W={args.window} batch {args.batch}:")
    for kind, run in runs.items():
        print(
            f"  {kind:>10}: {run['ms_per_step']:.2f} ms/step, "
            f"{run['ticks_per_s'] / 1e6:.2f} M ticks/s"
        )
    print(f"  ma vs the faster peer: {report['speedup_vs_faster_peer']:.2f}x")


if __name__ == "__main__":
    main()

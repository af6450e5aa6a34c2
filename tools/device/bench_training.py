"""Training throughput of the MA-Transformer on the GPU against the same model
with dense SDPA attention and with FlexAttention, measured in one run.

The model of ANCHORS.md: d_model 128, 4 heads, 4 pre-norm layers, MLP 4x,
window 256, a 3-class head on every position; L = 4096, batch 16; bf16
autocast, fused AdamW; one step = forward + backward + optimizer.
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    # FlexAttention recompiles per mask shape; allow it rather than fall back to eager.
    torch._dynamo.config.cache_size_limit = 64
    cfg = anchors_config(args.window)
    # Rounds interleave the kinds, so a slow spell of the machine hits them all;
    # each kind's figure is the median of its rounds' median steps.
    rounds = {kind: [] for kind in ma_model.ATTENTION_KINDS}
    for _ in range(args.rounds):
        for kind in ma_model.ATTENTION_KINDS:
            rounds[kind].append(ma_model.benchmark_steps(
                cfg, kind, args.steps, batch=args.batch, length=args.length, device="cuda"))
    runs = {}
    for kind, results in rounds.items():
        ms = statistics.median(r["ms_per_step"] for r in results)
        runs[kind] = {
            **{k: v for k, v in results[0].items() if k != "losses"},
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

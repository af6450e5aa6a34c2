"""Training throughput of the MA-Transformer on the GPU against the same model
with dense SDPA attention and with FlexAttention, measured in one run.

The model of ANCHORS.md: d_model 128, 4 heads, 4 pre-norm layers, MLP 4x,
window 256, a 3-class head on every position; L = 4096, batch 16; bf16
autocast, fused AdamW; one step = forward + backward + optimizer. Setups:
per-layer dilations (1,1,1,1 as in ANCHORS.md; 1,2,4,8, the MA-Transformer's
own default, where FlexAttention's block mask spans d times the keys while
ma_kernels' cost stays that of W keys), each eager, through torch.compile, or
compiled with the whole step replayed as one CUDA graph (the same for every
kind). Each kind runs in processes of its own.
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


def anchors_config(window: int, dilations: tuple[int, ...] = (1, 1, 1, 1)) -> ma_model.Config:
    return ma_model.config_from_dict(
        {
            "model": {
                "model_dim": 128,
                "num_heads": 4,
                "num_layers": 4,
                "window": window,
                "dilations": list(dilations),
                "mlp_ratio": 4,
                "num_horizons": 1,
            },
            "data": {"horizons": [10]},
        }
    )


def dilations_arg(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(","))


# "graph": compiled (default mode), the whole step replayed as one CUDA graph.
MODES = ("eager", *ma_model.COMPILE_MODES, "graph")


def step_options(mode: str) -> dict:
    """A --modes entry as benchmark_steps' ``compile`` and ``cuda_graph``."""
    if mode == "graph":
        return {"compile": True, "cuda_graph": True}
    return {"compile": False if mode == "eager" else mode, "cuda_graph": False}


def measure(kind: str, dilations: tuple[int, ...], mode: str, args) -> dict:
    """One kind's steps in this process: ``benchmark_steps`` of the ANCHORS
    model with these dilations."""
    # FlexAttention recompiles per mask shape; allow it rather than fall back to eager.
    torch._dynamo.config.cache_size_limit = 64
    result = ma_model.benchmark_steps(anchors_config(args.window, dilations), kind, args.steps,
                                      batch=args.batch, length=args.length, device="cuda",
                                      **step_options(mode))
    # Graphs that reduce-overhead ran without CUDA graphs (a partial capture).
    result["cudagraph_skips"] = torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]
    return result


def measure_apart(kind: str, dilations: tuple[int, ...], mode: str, args) -> dict:
    """``measure`` in a fresh process: in one process, a kind measured after
    the others ran ~20% slower than in its first round (allocator and
    compile state carry over), so each round of each kind starts clean."""
    command = [sys.executable, __file__, "--one", kind, "--out", "-", "--steps", str(args.steps),
               "--length", str(args.length), "--window", str(args.window),
               "--batch", str(args.batch), "--dilations", ",".join(map(str, dilations))]
    done = subprocess.run(command + ["--modes", mode], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def measure_setup(dilations: tuple[int, ...], mode: str, args) -> dict:
    """Every kind at one setup. Rounds interleave the kinds, so a slow spell
    of the machine hits them all; each kind's figure is the median of its
    rounds' median steps."""
    rounds = {kind: [] for kind in ma_model.ATTENTION_KINDS}
    for _ in range(args.rounds):
        for kind in ma_model.ATTENTION_KINDS:
            rounds[kind].append(measure_apart(kind, dilations, mode, args))
    runs = {}
    for kind, results in rounds.items():
        ms = statistics.median(r["ms_per_step"] for r in results)
        runs[kind] = {
            **results[0],
            "ms_per_step": ms,
            "ticks_per_s": args.batch * args.length / (ms / 1e3),
            "rounds_ms_per_step": [r["ms_per_step"] for r in results],
            "rounds_host_ms_per_step": [r["host_ms_per_step"] for r in results],
        }
    faster_peer = min(runs["sdpa_dense"]["ms_per_step"], runs["flex"]["ms_per_step"])
    return {"dilations": list(dilations), "mode": mode, "runs": runs,
            "speedup_vs_faster_peer": faster_peer / runs["ma"]["ms_per_step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dilations", type=dilations_arg, action="append",
                        help="per-layer dilations, e.g. 1,2,4,8; repeat for several setups "
                             "(default: 1,1,1,1, the model of ANCHORS.md, and 1,2,4,8, the "
                             "MA-Transformer's default for 4 layers)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=("graph",),
                        help="eager, torch.compile's mode for the model, or graph (default: "
                             "compiled, the whole step one CUDA graph, ~35 s per process of "
                             "compiling); the same for every kind; with --one, the first")
    parser.add_argument("--one", choices=ma_model.ATTENTION_KINDS,
                        help="measure this kind here and print its result (used by the rounds)")
    args = parser.parse_args()
    setups = args.dilations or [(1, 1, 1, 1), (1, 2, 4, 8)]
    if args.one:
        result = measure(args.one, setups[0], args.modes[0], args)
        print(json.dumps({k: v for k, v in result.items() if k != "losses"}))
        return
    report = {
        **environment(),
        "config": {"batch": args.batch, "length": args.length, "window": args.window,
                   "model_dim": 128, "heads": 4, "layers": 4, "steps": args.steps,
                   "rounds": args.rounds},
        "setups": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"training, {report['gpu']}, L={args.length} W={args.window} batch {args.batch}:")
    for mode in args.modes:
        for dilations in setups:
            setup = measure_setup(dilations, mode, args)
            report["setups"].append(setup)
            args.out.write_text(json.dumps(report, indent=2) + "\n")  # what is done so far
            print(f"  {mode}, dilations {','.join(map(str, dilations))}:")
            for kind, run in setup["runs"].items():
                rounds = ", ".join(
                    f"{ms:.2f} (host {host:.2f})" for ms, host in
                    zip(run["rounds_ms_per_step"], run["rounds_host_ms_per_step"], strict=True))
                print(f"    {kind:>10}: {run['ms_per_step']:.2f} ms/step, "
                      f"{run['ticks_per_s'] / 1e6:.2f} M ticks/s; rounds {rounds}")
            print(f"    ma vs the faster peer: {setup['speedup_vs_faster_peer']:.2f}x", flush=True)


if __name__ == "__main__":
    main()

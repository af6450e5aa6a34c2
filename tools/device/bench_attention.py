"""Sliding-window attention on the GPU against FlexAttention and SDPA, one run.

Three timings of each, forward and forward+backward: eager, one call at a
time (``*_ms``: host work and kernels in series, the latency one call sees);
eager, calls back to back (``*_pipelined_ms``: the host queues ahead as in a
training loop); and CUDA graph replays back to back (``*_graph_ms``: kernels
alone, the backward's gradient accumulation included).

Run as a script on a GPU machine: ``python tools/device/bench_attention.py --out
results.json``. Shapes are the ANCHORS ones; each figure sits beside its
peers' from the same run, so ratios hold across machines. The JSON is
rewritten after every shape, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import median_ms  # tools/device/, the script's own folder
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import ma_kernels

SHAPES = [(16, 4, 1024, 128, 32), (16, 4, 4096, 256, 64), (8, 4, 16384, 512, 64)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# Calls back to back per timing in the pipelined figures (timing.median_ms).
PIPELINED = 10
# Time against L at fixed (B, H, W, D) = (2, 4, 256, 64), bf16: it should grow linearly.
LENGTHS = "1024,4096,16384,65536"


def window_flops(batch, heads, length, window, head_dim) -> int:
    """4·B·H·D·Σ_i min(i+1, W): the forward's multiply-adds inside the window, x2."""
    visible = sum(min(i + 1, window) for i in range(length))
    return 4 * batch * heads * head_dim * visible


def graph_ms(fn, reps: int) -> float | None:
    """Median of CUDA-graph replays of ``fn``, back to back: device time without
    the per-call host overhead (custom_op dispatch, autograd), which dominates
    small shapes. (One replay at a time would add the graph launch's own host
    latency, 3-8 us, to kernels of 15.)"""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return median_ms(graph.replay, reps=reps, calls=PIPELINED)
    except Exception as err:  # a peer that cannot be captured gets no figure
        print("no graph timing:", str(err).splitlines()[0], flush=True)
        return None


def bench_shape(batch, heads, length, window, head_dim, dtype, reps) -> dict:
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, device="cuda", dtype=dtype, requires_grad=True)
        for _ in range(3)
    )
    dout = torch.randn_like(q)

    def sliding(b, h, i, j):
        return (i >= j) & (i - j < window)

    block_mask = create_block_mask(sliding, None, None, length, length)
    flex = torch.compile(flex_attention)
    runs = {
        "ma_kernels": lambda: ma_kernels.sliding_window_attention(q, k, v, window),
        "flex": lambda: flex(q, k, v, block_mask=block_mask),
    }
    if dtype != torch.float32:  # SDPA's flash backend is 16-bit only
        runs["sdpa_causal"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    result = {"shape": [batch, heads, length, window, head_dim], "dtype": str(dtype)}
    flops = window_flops(batch, heads, length, window, head_dim)
    for name, fn in runs.items():
        def step(fn=fn):
            fn().backward(dout)

        with torch.no_grad():
            result[f"{name}_fwd_ms"] = median_ms(fn, reps=reps)
            result[f"{name}_fwd_pipelined_ms"] = median_ms(fn, reps=reps, calls=PIPELINED)
        result[f"{name}_fwd_bwd_ms"] = median_ms(step, reps=reps)
        result[f"{name}_fwd_bwd_pipelined_ms"] = median_ms(step, reps=reps, calls=PIPELINED)
        result[f"{name}_fwd_tflops"] = flops / result[f"{name}_fwd_ms"] / 1e9
        with torch.no_grad():
            result[f"{name}_fwd_graph_ms"] = graph_ms(fn, reps)
        result[f"{name}_fwd_bwd_graph_ms"] = graph_ms(step, reps)
    # Our backward op alone, replayed from a graph (device time of dq, dk, dv).
    with torch.no_grad():
        out, lse = torch.ops.ma_kernels.sliding_window_attention_forward(
            q, k, v, window, 0, 1, head_dim**-0.5
        )
    result["ma_kernels_bwd_graph_ms"] = graph_ms(
        lambda: torch.ops.ma_kernels.sliding_window_attention_backward(
            q, k, v, out, dout, lse, window, 0, 1, head_dim**-0.5
        ),
        reps,
    )
    return result


def main() -> None:
    # Each shape and dtype recompiles flex_attention; past dynamo's default limit
    # it silently falls back to dense eager attention (O(L^2) memory).
    torch._dynamo.config.recompile_limit = 64
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="of " + ", ".join(DTYPES))
    parser.add_argument("--lengths", default=LENGTHS, help="L of the scaling sweep ('' for none)")
    args = parser.parse_args()
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "commit": os.environ.get("MA_COMMIT", "unknown"),
        "results": [],
    }
    for dtype_name in filter(None, args.dtypes.split(",")):
        for shape in SHAPES:
            r = bench_shape(*shape, DTYPES[dtype_name], args.reps)
            report["results"].append(r)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            print(
                dtype_name,
                shape,
                {k: round(v, 3) for k, v in r.items() if isinstance(v, float)},
                flush=True,
            )
    for length in filter(None, args.lengths.split(",")):
        shape = (2, 4, int(length), 256, 64)
        r = bench_shape(*shape, torch.bfloat16, args.reps)
        report.setdefault("scaling", []).append(r)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(
            "bf16 scaling",
            shape,
            {k: round(v, 3) for k, v in r.items() if isinstance(v, float)},
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Raw tick to signal latency of the streaming engine on the GPU (features,
normalisation and model in one captured graph), against the floors measured
in the same run: a pinned copy in and out around one tiny kernel, and around
an empty CUDA-graph replay.

The model of ANCHORS.md: d_model 128, 4 heads, 4 layers, window 256, MLP 4x,
one horizon; wall time per tick from host input to host signal.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from timing import environment

import ma_features
import ma_model
import ma_runtime


def anchors_engine(instruments: int) -> ma_runtime.StreamEngine:
    spec = ma_features.FeatureSpec.model_inputs()
    cfg = ma_model.ModelConfig(
        input_dim=len(spec.names),
        model_dim=128,
        num_heads=4,
        num_layers=4,
        window=256,
        dilations=(1, 1, 1, 1),
        mlp_ratio=4,
        num_horizons=1,
        num_regression=1,
    )
    model = ma_model.MATransformer(cfg)
    standardizer = ma_features.Standardizer().fit(torch.randn(1000, cfg.input_dim).double())
    inputs = ma_model.ModelInputs(spec, standardizer, dt_scale=1e-3)
    return ma_runtime.StreamEngine(model, inputs, instruments=instruments, device="cuda")


def floors(calls: int) -> dict:
    host_in, host_out = torch.ones(16, pin_memory=True), torch.empty(16, pin_memory=True)
    device = torch.empty(16, device="cuda")

    def tiny_kernel(_):
        device.copy_(host_in, non_blocking=True)
        device.add_(1)
        host_out.copy_(device, non_blocking=True)
        torch.cuda.current_stream().synchronize()

    graph = torch.cuda.CUDAGraph()
    with warnings.catch_warnings():  # empty on purpose: the floor of a replay
        warnings.filterwarnings("ignore", message="The CUDA Graph is empty")
        with torch.cuda.graph(graph):
            pass

    def empty_graph(_):
        device.copy_(host_in, non_blocking=True)
        graph.replay()
        host_out.copy_(device, non_blocking=True)
        torch.cuda.current_stream().synchronize()

    return {
        "copy_tiny_kernel_copy": vars(ma_runtime.measure_latency(tiny_kernel, calls)),
        "copy_empty_graph_copy": vars(ma_runtime.measure_latency(empty_graph, calls)),
    }


def engine_latency(instruments: int, calls: int) -> ma_runtime.LatencyStats:
    """Raw ticks to signals: each call pushes one simulated tick of every instrument."""
    engine = anchors_engine(instruments)
    ticks = ma_features.simulate(calls + 50, levels=1, seed=0)
    ids = np.arange(instruments)
    batches = [ma_features.Ticks.concat([ticks[i : i + 1]] * instruments)
               for i in range(calls + 50)]
    return ma_runtime.measure_latency(lambda i: engine.push(batches[i], ids), calls, warmup=50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    report = {
        **environment(),
        "floors": floors(args.calls),
        "engine": {},
    }
    for instruments in (1, 256):
        report["engine"][f"instruments_{instruments}"] = vars(
            engine_latency(instruments, args.calls)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"tick-to-signal latency, {report['gpu']} (p50 / p99 us):")
    for name, stats in {**report["floors"], **report["engine"]}.items():
        print(f"  {name:>22}: {stats['p50_us']:.1f} / {stats['p99_us']:.1f}")


if __name__ == "__main__":
    main()

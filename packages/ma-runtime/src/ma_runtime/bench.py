"""ma-bench: raw tick to signal latency of the streaming engine, beside its
peer and its floors measured in the same run.

    ma-bench [--model-path CKPT] [--num-ticks 100000] [--instruments N]
             [--device auto] [--json out.json] [--plot latency.png]

A measured call pushes one simulated tick of each instrument (raw ticks:
checks, features, standardisation, the model) and waits for the signals.
In the same process, on the same device:

- ``peer``: the same model's KV-cache step in plain PyTorch ops
  (``MATransformer.step(fused=False)``, bf16 on a GPU as in ANCHORS.md) on
  feature rows already computed, captured in one CUDA graph (eager on a CPU),
  with its copies in and out: what a plain PyTorch stream of the model costs;
- ``device_round`` (CUDA): the engine's round alone, from staged inputs to
  result rows on the host (graph: copies, replay, sync; resident: the
  kernel's round trip), without the Python that packs ticks and builds
  signals;
- ``floor_empty_graph`` (CUDA): a pinned copy in, an empty CUDA-graph replay,
  a copy out; ``floor_tiny_kernel``: the same around one tiny kernel.

Without ``--model-path``: the model of ANCHORS.md (d_model 128, 4 heads, 4
layers, window 256) with random weights, reading the default feature spec.
The original design's ``--model_path`` and ``--num_ticks`` are accepted.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import ma_features
import ma_model

from .engine import MODES, StreamEngine, auto_device
from .latency import LatencyStats, measure_latency

ANCHORS_MODEL = {"model_dim": 128, "num_heads": 4, "num_layers": 4, "window": 256,
                 "dilations": [1, 1, 1, 1], "mlp_ratio": 4}


def anchors_engine(instruments: int, device: str, mode: str | None = None) -> StreamEngine:
    """The ANCHORS.md model with random weights, standardised on simulated ticks."""
    return random_engine(ANCHORS_MODEL, instruments, device, mode)


def random_engine(model: dict, instruments: int, device: str,
                  mode: str | None = None) -> StreamEngine:
    """An engine of the model config ``model`` (a YAML ``model:`` section) with
    random weights, reading the default spec standardised on simulated ticks."""
    cfg = ma_model.config_from_dict({"model": model, "data": {"horizons": [10]}})
    torch.manual_seed(0)
    model = ma_model.MATransformer(ma_model.model_config(cfg))
    raw = ma_model.raw_columns(ma_features.simulate(20_000, levels=1, seed=99),
                               cfg.data.features)
    inputs = ma_model.ModelInputs.fit(cfg.data.features, raw["x"], raw["dt"])
    return StreamEngine(model, inputs, instruments=instruments, device=device, mode=mode)


def simulated_pushes(calls: int, instruments: int, levels: int):
    """``calls`` batches of one tick per instrument, each instrument its own book."""
    per = [ma_features.simulate(calls, levels=levels, seed=i) for i in range(instruments)]
    ids = np.arange(instruments)
    return [(ma_features.Ticks.concat([p[c : c + 1] for p in per]), ids) for c in range(calls)]


def engine_latency(engine: StreamEngine, calls: int, warmup: int,
                   samples: list[int] | None = None) -> LatencyStats:
    pushes = simulated_pushes(calls + warmup, engine.instruments, engine.levels)
    return measure_latency(lambda i: engine.push(*pushes[i]), calls, warmup=warmup,
                           progress="engine", samples=samples)


def peer_latency(model: ma_model.MATransformer, instruments: int, device: torch.device,
                 calls: int, warmup: int, samples: list[int] | None = None) -> LatencyStats:
    """The model's KV-cache step in torch ops on ready feature rows, in one
    CUDA graph (bf16) on a GPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = copy.deepcopy(model).to(dtype)
    cache = model.new_cache(instruments, device, dtype)
    x = torch.randn(instruments, model.config.input_dim, device=device, dtype=dtype)
    dt = torch.rand(instruments, device=device, dtype=dtype)
    with torch.inference_mode():
        def step():
            return model.step(x, dt, cache, fused=False)[0].softmax(-1)

        if device.type != "cuda":
            return measure_latency(lambda i: step().numpy(), calls, warmup=warmup,
                                   progress="peer", samples=samples)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = step()
        host_x = torch.randn(x.shape, dtype=dtype, pin_memory=True)
        host_out = torch.empty(out.shape, dtype=dtype, pin_memory=True)

        def call(_):
            x.copy_(host_x, non_blocking=True)
            graph.replay()
            host_out.copy_(out, non_blocking=True)
            torch.cuda.current_stream(device).synchronize()

        return measure_latency(call, calls, warmup=warmup, progress="peer", samples=samples)


def device_round_latency(engine: StreamEngine, calls: int, warmup: int,
                         samples: list[int] | None = None) -> LatencyStats:
    """The engine's round alone, from staged inputs to result rows on the
    host (the graph's copies, replay and sync, or the resident kernel's
    round trip), no instrument active: the engine's figure less the Python
    that packs ticks and builds signals."""
    engine._stage_i64[:, 1] = 0  # push sets every flag again
    return measure_latency(lambda _: engine._run(), calls, warmup=warmup,
                           progress="device round", samples=samples)


def floors(calls: int, samples: dict[str, list[int]]) -> dict[str, LatencyStats]:
    """A pinned copy in and out around an empty CUDA-graph replay, and around one tiny kernel."""
    host_in, host_out = torch.ones(16, pin_memory=True), torch.empty(16, pin_memory=True)
    on_device = torch.empty(16, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with warnings.catch_warnings():  # empty on purpose: the floor of a replay
        warnings.filterwarnings("ignore", message="The CUDA Graph is empty")
        with torch.cuda.graph(graph):
            pass

    def round_trip(work):
        def call(_):
            on_device.copy_(host_in, non_blocking=True)
            work()
            host_out.copy_(on_device, non_blocking=True)
            torch.cuda.current_stream().synchronize()
        return call

    work = {"floor_empty_graph": graph.replay, "floor_tiny_kernel": lambda: on_device.add_(1)}
    return {name: measure_latency(round_trip(w), calls, samples=samples.setdefault(name, []))
            for name, w in work.items()}


def run(engine: StreamEngine, calls: int, warmup: int = 100,
        samples: dict[str, list[int]] | None = None) -> dict:
    """Every figure of one run, as plain values; ``samples`` receives each
    measurement's times in ns, by name."""
    samples = {} if samples is None else samples
    figures = {"engine": engine_latency(engine, calls, warmup, samples.setdefault("engine", [])),
               "peer": peer_latency(engine.model, engine.instruments, engine.device, calls,
                                    warmup, samples.setdefault("peer", []))}
    if engine.device.type == "cuda":
        figures["device_round"] = device_round_latency(engine, calls, warmup,
                                                       samples.setdefault("device_round", []))
        figures.update(floors(calls, samples))
    seconds = figures["engine"].mean_us * figures["engine"].count / 1e6
    return {
        "device": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__, "instruments": engine.instruments, "calls": calls,
        "mode": engine.mode,
        "ticks_per_s": engine.instruments * calls / seconds,
        "rejected": dict(engine.rejected),
        **{name: vars(stats) for name, stats in figures.items()},
    }


def plot(report: dict, samples: dict[str, list[int]], path: Path) -> Path | None:
    """A histogram of each measurement's times on log-spaced bins, p50 marked."""
    try:
        import matplotlib
    except ImportError:
        print("plot skipped: matplotlib is not installed", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    us = {name: np.asarray(ns) / 1e3 for name, ns in samples.items() if ns}
    low, high = min(v.min() for v in us.values()), max(v.max() for v in us.values())
    bins = np.geomspace(max(low, 0.1), high * 1.01, 80)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, values) in enumerate(us.items()):
        p50 = report[name]["p50_us"]
        ax.hist(values, bins=bins, histtype="step", color=f"C{i}",
                label=f"{name} (p50 {p50:.0f} us)")
        ax.axvline(p50, color=f"C{i}", linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("microseconds per call")
    ax.set_ylabel("calls")
    ax.set_title(f"raw tick to signal, {report['instruments']} instrument(s), {report['device']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ma-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", "--model_path", dest="model_path", type=Path,
                        help="a training checkpoint (default: the ANCHORS model, random weights)")
    parser.add_argument("--num-ticks", "--num_ticks", dest="num_ticks", type=int,
                        default=100_000, help="measured pushes (default 100000)")
    parser.add_argument("--instruments", type=int, default=1)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--mode", choices=MODES,
                        help="the engine's device step (default: resident on CUDA where the model "
                        "fits the kernel and at most 32 instruments stream, else graph; eager "
                        "on a CPU)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the latencies here")
    parser.add_argument("--profile", type=Path,
                        help="also profile 200 pushes with torch.profiler: a Chrome trace "
                             "(trace.json) and a table of ops and kernels (profile.txt) here")
    args = parser.parse_args(argv)
    if args.num_ticks < 1 or args.instruments < 1:
        parser.error("--num-ticks and --instruments must be >= 1")
    device = auto_device() if args.device == "auto" else args.device
    try:
        if args.model_path:
            engine = StreamEngine.from_checkpoint(args.model_path, instruments=args.instruments,
                                                  device=device, mode=args.mode)
        else:
            engine = anchors_engine(args.instruments, device, args.mode)
    except ValueError as e:  # a bad checkpoint or option
        parser.exit(2, f"ma-bench: error: {e}\n")
    samples: dict[str, list[int]] = {}
    report = run(engine, args.num_ticks, samples=samples)
    for name in ("engine", "device_round", "peer", "floor_empty_graph", "floor_tiny_kernel"):
        if name in report:
            s = report[name]
            print(f"{name:>18}: p50 {s['p50_us']:8.1f} us  p99 {s['p99_us']:8.1f} us  "
                  f"p99.9 {s['p999_us']:8.1f} us  max {s['max_us']:8.1f} us")
    print(f"{report['ticks_per_s']:,.0f} ticks/s through the engine")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.plot and plot(report, samples, args.plot):
        print(f"wrote {args.plot}")
    if args.profile:
        for path in profile(engine, args.profile):
            print(f"wrote {path}")


def profile(engine: StreamEngine, out_dir: Path, calls: int = 200) -> list[Path]:
    """``calls`` pushes under torch.profiler (CPU, and CUDA on a GPU): a Chrome
    trace with the engine's NVTX-named stages, and the ops and kernels by time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    out_dir.mkdir(parents=True, exist_ok=True)
    pushes = simulated_pushes(calls + 10, engine.instruments, engine.levels)
    for ticks, ids in pushes[:10]:
        engine.push(ticks, ids)
    activities = [ProfilerActivity.CPU]
    if engine.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as prof:
        for ticks, ids in pushes[10:]:
            engine.push(ticks, ids)
    trace, table = out_dir / "trace.json", out_dir / "profile.txt"
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if engine.device.type == "cuda" else "self_cpu_time_total"
    table.write_text(prof.key_averages().table(sort_by=sort, row_limit=30))
    return [trace, table]

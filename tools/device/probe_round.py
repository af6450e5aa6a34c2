"""Where a graph-mode device round goes, at 1 and 256 instruments: the
engine's ``_run`` timed on the host, and its parts (copy in, replay, copy
out) timed by CUDA events in the same calls; the replay's host call alone;
the replay with every instrument active and with none. Writes one JSON file.

    python3 probe_round.py --out round.json [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ma_runtime.bench import anchors_engine, simulated_pushes


def percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values)
    return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "min": float(v.min())}


def split_round(engine, calls: int) -> dict:
    """``_run``'s graph path, step by step, with an event between steps."""
    stream = torch.cuda.current_stream(engine.device)
    events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    parts = {"copy_in": [], "replay": [], "copy_out": [], "host_wall": [],
             "host_replay_call": [], "host_sync_wait": []}
    for _ in range(calls):
        start = time.perf_counter_ns()
        events[0].record(stream)
        engine._in.copy_(engine._host_in, non_blocking=True)
        events[1].record(stream)
        before = time.perf_counter_ns()
        engine._graph.replay()
        parts["host_replay_call"].append((time.perf_counter_ns() - before) / 1e3)
        events[2].record(stream)
        engine._host_out.copy_(engine._out, non_blocking=True)
        events[3].record(stream)
        before = time.perf_counter_ns()
        stream.synchronize()
        end = time.perf_counter_ns()
        parts["host_sync_wait"].append((end - before) / 1e3)
        parts["host_wall"].append((end - start) / 1e3)
        for name, a, b in (("copy_in", 0, 1), ("replay", 1, 2), ("copy_out", 2, 3)):
            parts[name].append(events[a].elapsed_time(events[b]) * 1e3)
    return {name: percentiles(v) for name, v in parts.items()}


def run_wall(engine, calls: int) -> dict:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        engine._run()
        times.append((time.perf_counter_ns() - start) / 1e3)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    report = {}
    for instruments in (1, 256):
        engine = anchors_engine(instruments, "cuda", "graph")
        # Past the window (256): attention reads all of it, as in a long stream.
        for ticks, ids in simulated_pushes(300, instruments, engine.levels):
            engine.push(ticks, np.asarray(ids))  # the last push's flags stay staged: all active
        figures = {"active_run": run_wall(engine, args.calls),
                   "active_split": split_round(engine, args.calls)}
        engine._stage_i64[:, 1] = 0
        figures["idle_run"] = run_wall(engine, args.calls)
        figures["idle_split"] = split_round(engine, args.calls)
        report[f"instruments_{instruments}"] = figures
        for name, f in figures.items():
            parts = f if "split" in name else {"wall": f}
            print(instruments, name, " ".join(f"{k} {v['p50']:.1f}" for k, v in parts.items()))
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

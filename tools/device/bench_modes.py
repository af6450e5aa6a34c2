"""Graph or resident: the engine's device round (staged ticks to result rows,
every instrument active, windows full) and its push, for each mode at
1 to 256 instruments, so that the default mode can follow where each is
faster. Writes one JSON file.

    python3 bench_modes.py --out modes.json [--calls 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from timing import environment

from ma_runtime.bench import anchors_engine, simulated_pushes
from ma_runtime.latency import measure_latency

INSTRUMENTS = (1, 8, 32, 64, 128, 256)


def figures(mode: str, instruments: int, pushes: list, calls: int) -> dict:
    """Push and round p50 of one engine; the round repeats the last push's
    ticks, every instrument active. ``ran``: the mode it ran in (a resident
    kernel that cannot start falls back to the graph, with a warning)."""
    with anchors_engine(instruments, "cuda", mode) as engine:
        push = measure_latency(lambda i: engine.push(*pushes[i]), calls, warmup=300)
        round_trip = measure_latency(lambda _: engine._run(), calls)
    return {"push": push.p50_us, "round": round_trip.p50_us, "ran": engine.mode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    report = {**environment(), "calls": args.calls, "p50_us": {}}
    for instruments in INSTRUMENTS:
        # Past the window (256) first; the timed pushes follow on.
        pushes = simulated_pushes(300 + args.calls, instruments, 1)
        for mode in ("graph", "resident"):
            got = report["p50_us"][f"{mode}_{instruments}"] = figures(mode, instruments, pushes,
                                                                      args.calls)
            print(f"{instruments:>4} instruments, {mode:>8}: push p50 {got['push']:7.1f} us, "
                  f"round {got['round']:7.1f} us (ran {got['ran']})", flush=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

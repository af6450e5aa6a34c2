"""Load test of the network feed on loopback: a burst of simulated ticks of
several instruments (one in 97 made bad: a negative size) sent over TCP to a
TickServer in front of a StreamEngine. Checks that every tick got exactly
one result, a signal or a rejection with its reason (nothing lost, nothing
duplicated), and prints the outcomes and the throughput.

    python tools/feed_load_test.py --ticks 1000000 --instruments 64 [--checkpoint CKPT]

Without --checkpoint, a small model with random weights reads the default
spec (the engine's work per tick, not its signals, is what is measured).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import ma_features
import ma_runtime
from ma_runtime.bench import random_engine

SMALL_MODEL = {"model_dim": 32, "num_heads": 1, "num_layers": 2, "window": 16,
               "dilations": [1, 2]}


def burst(ticks: int, instruments: int) -> tuple[ma_features.Ticks, np.ndarray]:
    """`ticks` simulated events of `instruments` books merged by time."""
    per = -(-ticks // instruments)
    streams = [ma_features.simulate(per, levels=1, seed=i) for i in range(instruments)]
    merged = ma_features.Ticks.concat(streams)
    ids = np.repeat(np.arange(instruments), per)
    order = np.argsort(merged.time, kind="stable")[:ticks]
    merged, ids = merged[order], ids[order]
    bid_size = merged.bid_size.copy()
    bid_size[::97, 0] = -1.0
    return ma_features.Ticks(**{**vars(merged), "bid_size": bid_size}), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--instruments", type=int, default=64)
    parser.add_argument("--checkpoint", help="a training checkpoint (default: a random model)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()
    device = ma_runtime.auto_device() if args.device == "auto" else args.device
    if args.checkpoint:
        engine = ma_runtime.StreamEngine.from_checkpoint(
            args.checkpoint, instruments=args.instruments, device=device)
    else:
        engine = random_engine(SMALL_MODEL, args.instruments, device)
    ticks, ids = burst(args.ticks, args.instruments)
    with ma_runtime.TickServer(engine) as server:
        start = time.perf_counter()
        results = ma_runtime.send_ticks(server.address, ticks, ids,
                                        engine.model.config.num_horizons, levels=engine.levels)
        elapsed = time.perf_counter() - start
    outcomes = ma_runtime.check_results(results, len(ticks))  # raises on loss or duplicates
    report = {"ticks": len(ticks), "instruments": args.instruments, "device": device,
              "seconds": elapsed, "ticks_per_s": len(ticks) / elapsed, "outcomes": outcomes,
              "server_errors": server.errors}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

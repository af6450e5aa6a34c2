"""Where a round of the resident kernel goes: the ANCHORS model (random
weights) on one instrument, ``--rounds`` rounds with stage stamps
(``ResidentStream(trace=True)``), the median time of each stage and the
host's round trip. Writes one JSON file.

    python3 tools/device/profile_resident.py --out resident_stages.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packages/ma-kernels/tests"))
from test_resident import resident_args, rounds  # noqa: E402
from timing import environment  # noqa: E402

import ma_kernels  # noqa: E402


def stage_names(layers: int) -> list[str]:
    """The stages between the kernel's stamps, in order (resident_stages.cuh:
    run(), exchange()): "barrier" is a cluster barrier, from this block's
    part written to every block's. Each name is distinct (they key the JSON)."""
    names = ["featurise", "embedding"]
    for layer in range(layers):
        names += [f"layer {layer}: {stage}" for stage in (
            "norm 1", "qkv projection", "barrier 1", "q, k, v gathered",
            "attention, out projection", "barrier 2", "softmax weights, reduce",
            "norm 2", "mlp: up, SwiGLU, down", "barrier 3", "down reduce")]
    return names + ["heads, outputs written"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    stream_args = resident_args("cuda", "ANCHORS model")
    names = stage_names(len(stream_args["dilations"]))
    stages, round_trips = [], []
    with ma_kernels.ResidentStream(**stream_args, trace=True) as stream:
        for k, (f64, i64) in enumerate(rounds(stream.batch, args.rounds + 100)):
            start = time.perf_counter_ns()
            stream.step(f64, i64)
            if k >= 100:  # after the warm-up
                round_trips.append(time.perf_counter_ns() - start)
                stages.append(np.diff(stream.stage_times()))
    stages = np.stack(stages) / 1e3
    report = {**environment(), "rounds": args.rounds,
              "round_trip_p50_us": float(np.median(round_trips) / 1e3),
              "in_kernel_p50_us": float(np.median(stages.sum(1))),
              "stages_p50_us": dict(zip(names, np.median(stages, 0).round(2).tolist(),
                                        strict=True))}
    by_kind: dict[str, float] = {}  # each stage summed over the layers
    for name, us in report["stages_p50_us"].items():
        kind = name.split(": ", 1)[-1]
        by_kind[kind] = round(by_kind.get(kind, 0.0) + us, 2)
    report["stages_by_kind_p50_us"] = by_kind
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"round trip p50 {report['round_trip_p50_us']:.1f} us, of which in the kernel "
          f"(seen to written) {report['in_kernel_p50_us']:.1f} us; by stage, over the layers:")
    for name, us in report["stages_by_kind_p50_us"].items():
        print(f"  {name:>36}: {us:7.2f} us")


if __name__ == "__main__":
    main()

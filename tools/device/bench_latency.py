"""Raw tick to signal latency on the GPU for 1 and 256 instruments, in the
engine's graph and resident modes: the engine (checks, features,
standardisation, model), its peer (the same model's KV-cache step in one CUDA graph, in plain
PyTorch) and the floors, all measured in the same run by ``ma-bench``'s
``run`` (packages/ma-runtime/src/ma_runtime/bench.py) on the ANCHORS.md
model with random weights. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from timing import environment

from ma_runtime.bench import anchors_engine, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    report = {**environment(), "runs": {}}
    for mode in ("graph", "resident"):
        for instruments in (1, 256):
            engine = anchors_engine(instruments, "cuda", mode)
            report["runs"][f"{mode}_instruments_{instruments}"] = run(engine, args.calls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"raw tick to signal, {report['gpu']} (p50 / p99 / p99.9 us):")
    for name, figures in report["runs"].items():
        for what in ("engine", "device_round", "peer", "floor_empty_graph", "floor_tiny_kernel"):
            s = figures[what]
            print(f"  {name} {what:>18}: {s['p50_us']:.1f} / {s['p99_us']:.1f} / "
                  f"{s['p999_us']:.1f}")


if __name__ == "__main__":
    main()

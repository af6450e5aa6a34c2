"""Draws docs/img/scaling.png from a JSON of tools/device/bench_scaling.py: the
loss curves of one process and of N on the same global batch, the gap
between them step by step, and both throughputs.

matplotlib is not a dependency of any package: install it to rerun this
(``pip install matplotlib``), then ``python tools/plot_scaling.py RESULTS.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="bench_scaling.py's JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "scaling.png")
    args = parser.parse_args()
    report = json.loads(args.results.read_text())
    one, many = report["one"], report["many"]
    n = many["processes"]
    steps = range(1, len(one["losses"]) + 1)
    gap = [abs(a - b) / abs(a) for a, b in zip(one["losses"], many["losses"], strict=True)]

    fig, (curves, gaps) = plt.subplots(1, 2, figsize=(11, 4))
    curves.plot(steps, one["losses"], label=f"1 process, {one['ms_per_step']:.2f} ms/step")
    curves.plot(steps, many["losses"], linestyle="--",
                label=f"{n} processes, {many['ms_per_step']:.2f} ms/step")
    curves.set_xlabel("step (warm-up included)")
    curves.set_ylabel("training loss of the global batch")
    curves.set_title(f"{n} processes: {report['speedup']:.2f}x the throughput of one")
    curves.legend(fontsize=8)
    gaps.semilogy(steps, [max(g, 1e-12) for g in gap], color="tab:gray")  # equal: 1e-12
    gaps.set_xlabel("step")
    gaps.set_ylabel("|loss(1) - loss(N)| / |loss(1)|")
    gaps.set_title(f"largest relative gap {report['max_rel_loss_difference']:.1e}")
    config = report["config"]
    fig.suptitle(f"MA-Transformer training, {report['gpu']} ({config['device']}), L = "
                 f"{config['length']}, W = {config['window']}, global batch {config['batch']}, "
                 f"{'bf16 autocast' if one['bf16'] else 'fp32'}, mode {config['mode']}",
                 fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

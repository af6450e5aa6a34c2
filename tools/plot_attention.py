"""Draws docs/img/attention_speedup.png: sliding-window attention against the
faster of FlexAttention and dense causal SDPA, from committed benchmark JSON.

matplotlib is not a dependency of any package: install it to rerun this
(``pip install matplotlib``), then ``python tools/plot_attention.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "attention_speedup.png"
# bf16 and fp32 from one run of the current code.
RESULTS = ROOT / "benchmarks" / "results" / "attention-h100-74444dd.json"


def main() -> None:
    report = json.loads(RESULTS.read_text())
    gpu = report["gpu"]
    bf16, fp32 = ([r for r in report["results"] if r["dtype"] == f"torch.{dtype}"]
                  for dtype in ("bfloat16", "float32"))
    timings = {"device (graph replays)": "graph_ms", "eager, one call": "ms"}

    def ratios(results, peers, what):  # per timing: faster peer's time / ours, per shape
        return {
            label: [min(r[f"{p}_{what}_{key}"] for p in peers) / r[f"ma_kernels_{what}_{key}"]
                    for r in results]
            for label, key in timings.items()
        }

    series = {  # title: (ratios per timing and shape, target)
        "bf16 forward vs faster peer": (ratios(bf16, ("flex", "sdpa_causal"), "fwd"), 1.5),
        "bf16 forward+backward vs faster peer": (
            ratios(bf16, ("flex", "sdpa_causal"), "fwd_bwd"), 1.3),
        "fp32 forward vs FlexAttention": (ratios(fp32, ("flex",), "fwd"), 2.0),
    }
    labels = ["B,H,L,W,D =\n" + ",".join(map(str, r["shape"])) for r in bf16]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=False)
    width = 0.38
    for ax, (title, (by_timing, target)) in zip(axes, series.items(), strict=True):
        for n, (timing, values) in enumerate(by_timing.items()):
            bars = ax.bar([x + (n - 0.5) * width for x in range(len(values))], values, width,
                          label=timing, color=("tab:blue", "tab:gray")[n])
            ax.bar_label(bars, fmt="%.2fx", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target}x")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("speedup (higher is better)")
        ax.set_ylim(0, max(target, *(max(v) for v in by_timing.values())) * 1.15)
        ax.legend(fontsize=7)
    fig.suptitle(f"ma_kernels.sliding_window_attention, {gpu}, one run")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

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
BF16 = FP32 = ROOT / "benchmarks" / "results" / "attention-h100-f30a3e1.json"


def rows(path: Path, dtype: str) -> tuple[str, list[dict]]:
    report = json.loads(path.read_text())
    return report["gpu"], [r for r in report["results"] if r["dtype"] == f"torch.{dtype}"]


def main() -> None:
    gpu, bf16 = rows(BF16, "bfloat16")
    _, fp32 = rows(FP32, "float32")
    series = {  # name: (ratios per shape, target)
        "bf16 forward vs faster peer": (
            [min(r["flex_fwd_ms"], r["sdpa_causal_fwd_ms"]) / r["ma_kernels_fwd_ms"] for r in bf16],
            1.5,
        ),
        "bf16 forward+backward vs faster peer": (
            [
                min(r["flex_fwd_bwd_ms"], r["sdpa_causal_fwd_bwd_ms"]) / r["ma_kernels_fwd_bwd_ms"]
                for r in bf16
            ],
            1.3,
        ),
        "fp32 forward vs FlexAttention": (
            [r["flex_fwd_ms"] / r["ma_kernels_fwd_ms"] for r in fp32],
            2.0,
        ),
    }
    labels = ["B,H,L,W,D =\n" + ",".join(map(str, r["shape"])) for r in bf16]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, (title, (ratios, target)) in zip(axes, series.items(), strict=True):
        bars = ax.bar(
            range(len(ratios)),
            ratios,
            color=["tab:green" if x >= target else "tab:orange" for x in ratios],
        )
        ax.bar_label(bars, fmt="%.2fx")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target}x")
        ax.set_xticks(range(len(ratios)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("speedup (higher is better)")
        ax.set_ylim(0, max(*ratios, target) * 1.15)
        ax.legend(fontsize=8)
    fig.suptitle(f"ma_kernels.sliding_window_attention, {gpu}, eager, one call at a time, one run")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

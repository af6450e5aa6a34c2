"""Draws docs/img/features_lobster.png: features of the shipped LOBSTER sample.

matplotlib is not a dependency of any package: install it to rerun this
(``pip install matplotlib``), then ``python tools/plot_features.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ma_features import FeatureSpec, compute_features_frame, lobster_sample  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "features_lobster.png"


def main() -> None:
    ticks = lobster_sample()
    spec = FeatureSpec(depth_imbalance=(5,), windows=(50,))
    frame = compute_features_frame(ticks, spec)
    seconds = (frame.index.to_numpy() - frame.index[0]) * 1e-9
    panels = [
        ("price ($)", ["mid", "microprice", "vwap_50"]),
        ("imbalance", ["imbalance", "depth_imbalance_5"]),
        ("flow over 50 events (shares)", ["ofi_sum_50", "signed_volume_sum_50"]),
        ("realized variance", ["realized_variance_50"]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 8), sharex=True)
    for ax, (label, columns) in zip(axes, panels, strict=True):
        for column in columns:
            ax.plot(seconds, frame[column], lw=0.8, drawstyle="steps-post", label=column)
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=8, ncols=len(columns), framealpha=0.8)
    axes[-1].set_xlabel("seconds after 09:30 (AAPL, 2012-06-21, LOBSTER sample)")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

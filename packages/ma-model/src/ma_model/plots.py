"""PNG plots of ma-eval's results (the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

from .contenders import NAMES
from .tables import as_runs


def plot(results: dict, out_dir: Path, log=print) -> list[Path]:
    """Macro F1 per horizon of every model (mean and spread over the runs),
    the first run's training curves and confusion matrices, as PNG; skipped
    with a message when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib
    except ImportError:
        log("plots skipped: matplotlib is not installed (pip install 'ma-model[plot]')")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if "summary" not in results:
        results = as_runs(results)
    first = results["runs"][0]
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(results["summary"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        f1 = results["summary"][name]["macro_f1"]
        ax.bar([h + i * width for h in range(len(f1))], [m["mean"] for m in f1], width,
               yerr=[m["std"] for m in f1], capsize=3, label=NAMES[name])
    ax.set_xticks([h + 0.4 - width / 2 for h in range(len(results["horizons"]))],
                  [f"k = {k}" for k in results["horizons"]])
    ax.set_ylabel(f"macro F1 (mean ± sd of {len(results['runs'])} runs)")
    ax.legend(fontsize=7)
    written = [out_dir / "macro_f1_by_horizon.png"]
    fig.savefig(written[0], dpi=100)
    plt.close(fig)
    history = first["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history["train_loss"]) + 1), history["train_loss"], label="train loss")
    if history["val_loss"]:  # empty without a validation split
        ax.plot(range(1, len(history["val_loss"]) + 1), history["val_loss"], label="val loss")
    ax.set_xlabel("epoch")
    ax.legend()
    written.append(out_dir / "training_curves.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    for k, r in zip(results["horizons"], first["model"], strict=True):
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(r["confusion"], cmap="Blues")
        for i, row in enumerate(r["confusion"]):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center")
        ax.set(xticks=range(3), yticks=range(3), xticklabels=["down", "stat.", "up"],
               yticklabels=["down", "stat.", "up"], xlabel="predicted", ylabel="true",
               title=f"horizon {k}")
        written.append(out_dir / f"confusion_h{k}.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written

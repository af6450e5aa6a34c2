"""Evaluation: ``ma-eval --checkpoint runs/default/best.pt [--baselines]``.

Rebuilds the checkpoint's splits (its data config, its train-fitted
normalisation) and scores a split per horizon. Every model is scored on the
same rows: windows of L ticks every L/2, each scoring its last L/2 positions,
so every scored tick has at least L/2 ticks of context.

Baselines on the same splits: logistic regression on the same per-tick
inputs, and the same network with dense causal attention (SDPA), trained
with the same config.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

import ma_features

from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, config_from_dict
from .data import Splits, TickArrays, WindowDataset, load_splits
from .inputs import ModelInputs
from .metrics import classification_report, confusion_matrix
from .model import MATransformer
from .train import fit, model_config, resolve_device


@torch.no_grad()
def scored_rows(arrays: TickArrays, length: int, predict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, labels)`` ``[rows, H]`` of ``predict(x [B, L, F], dt [B, L]) ->
    logits [B, L, H, 3]`` on the last L/2 positions of windows every L/2."""
    stride = max(1, length // 2)
    dataset = WindowDataset(arrays, length, stride)
    preds, labels = [], []
    for start in range(0, len(dataset), 64):
        items = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
        x, dt, y = (torch.stack(t) for t in list(zip(*items, strict=True))[:3])
        preds.append(predict(x, dt)[:, length - stride:].argmax(-1).flatten(0, 1).cpu())
        labels.append(y[:, length - stride:].flatten(0, 1))
    return torch.cat(preds), torch.cat(labels)


def report(pred: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One classification report per horizon (column)."""
    return [classification_report(confusion_matrix(labels[:, h], pred[:, h]))
            for h in range(labels.shape[1])]


def network_predictor(model: nn.Module, device: torch.device):
    model.eval()

    def predict(x, dt):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(x.to(device), dt.to(device))[0].float()
    return predict


def logistic_regression(train: TickArrays, steps: int = 300, seed: int = 0):
    """Multinomial logistic regression per horizon on one tick's inputs
    ``[x, log1p(dt)]``, fitted full-batch with L-BFGS on the train rows."""
    def inputs(x, dt):
        return torch.cat([x, torch.log1p(dt).unsqueeze(-1)], dim=-1)

    torch.manual_seed(seed)
    horizons = train.labels.shape[1]
    linear = nn.Linear(train.x.shape[1] + 1, 3 * horizons)
    features = inputs(train.x, train.dt)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps,
                                  line_search_fn="strong_wolfe")
    loss_fn = nn.CrossEntropyLoss(ignore_index=ma_features.IGNORE_INDEX)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(linear(features).view(-1, 3), train.labels.reshape(-1))
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda x, dt: linear(inputs(x, dt)).unflatten(-1, (horizons, 3))


def load_model(path: str | Path,
               device: str | torch.device = "cpu") -> tuple[MATransformer, ModelInputs]:
    """The trained model of a checkpoint, on ``device`` in eval mode, and what
    it reads: its feature spec with the statistics fitted on its train split.
    A file that is not a finished ma-train checkpoint (an entry missing,
    weights of other shapes or not finite) raises CheckpointError naming it."""
    ckpt = load_checkpoint(path)
    model = _model_from(ckpt, path).to(device).eval()
    return model, _inputs_of(ckpt, path)


def _entry(ckpt: dict, key: str, path: str | Path):
    if key not in ckpt:
        raise CheckpointError(f"{path}: no {key!r} entry; it was not written by ma-train "
                              f"(it holds {sorted(ckpt)})")
    return ckpt[key]


def _config_of(ckpt: dict, path: str | Path) -> Config:
    try:
        return config_from_dict(_entry(ckpt, "config", path), f"{path} config")
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(str(e)) from e


def _inputs_of(ckpt: dict, path: str | Path) -> ModelInputs:
    try:
        return ModelInputs.from_state(_config_of(ckpt, path).data.features,
                                      _entry(ckpt, "normalization", path))
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(f"{path}: its normalization does not fit its features: {e}") from e


def _model_from(ckpt: dict, path: str | Path) -> MATransformer:
    model = MATransformer(model_config(_config_of(ckpt, path)))
    weights = _entry(ckpt, "model", path)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes "
                              f"({first})") from e
    broken = [name for name, w in model.state_dict().items()
              if w.is_floating_point() and not bool(torch.isfinite(w).all())]
    if broken:
        raise CheckpointError(f"{path}: weights {broken[:3]} hold NaN or infinite values (the "
                              "run diverged?); use an earlier checkpoint")
    return model


def evaluate_checkpoint(path: str | Path, split: str = "test", baselines: bool = False,
                        log=print) -> dict:
    """``{"model": [per-horizon reports], "logistic": ..., "dense": ...}`` on ``split``."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    ckpt = load_checkpoint(path)
    cfg = _config_of(ckpt, path)
    model = _model_from(ckpt, path)
    splits: Splits = load_splits(cfg.data, _inputs_of(ckpt, path).state_dict())
    device = resolve_device(cfg.train.device)
    model = model.to(device)
    arrays, length = getattr(splits, split), cfg.data.sequence_length
    results = {"model": report(*scored_rows(arrays, length, network_predictor(model, device)))}
    if baselines:
        log("baseline: logistic regression on the same inputs")
        results["logistic"] = report(*scored_rows(arrays, length,
                                                  logistic_regression(splits.train)))
        dense_cfg = replace(cfg, model=replace(cfg.model, attention="sdpa_dense"),
                            train=replace(cfg.train, out_dir=str(Path(path).parent / "dense")))
        log("baseline: dense causal transformer, same size and config")
        dense = fit(dense_cfg, data=splits, log=log)
        dense_model = MATransformer(model_config(dense_cfg)).to(device)
        dense_model.load_state_dict(load_checkpoint(dense["best"])["model"])
        results["dense"] = report(*scored_rows(arrays, length,
                                               network_predictor(dense_model, device)))
    results["history"] = ckpt["history"]
    results["horizons"] = list(cfg.data.horizons)
    return results


def summary_table(results: dict) -> str:
    """Markdown table: model x horizon -> accuracy, macro F1, MCC."""
    lines = ["| model | horizon | accuracy | macro F1 | MCC |", "|---|---|---|---|---|"]
    names = {"model": "MA-Transformer", "logistic": "logistic regression",
             "dense": "dense causal transformer"}
    for key, name in names.items():
        for k, r in zip(results["horizons"], results.get(key, []), strict=False):
            lines.append(f"| {name} | {k} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                         f"{r['mcc']:.4f} |")
    return "\n".join(lines)


def class_report(r: dict) -> str:
    rows = [f"{'class':>11} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, c in zip(("down", "stationary", "up"), r["per_class"], strict=True):
        rows.append(f"{name:>11} {c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:7.4f} "
                    f"{c['support']:8d}")
    rows.append(f"confusion (rows true, columns predicted): {r['confusion']}")
    return "\n".join(rows)


def plot(results: dict, out_dir: Path, log=print) -> list[Path]:
    """Training curves and the model's confusion matrices as PNG; skipped with
    a message when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib
    except ImportError:
        log("plots skipped: matplotlib is not installed (pip install 'ma-model[plot]')")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    history = results["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train loss")
    ax.plot(epochs, history["val_loss"], label="val loss")
    ax.set_xlabel("epoch")
    ax.legend()
    written = [out_dir / "training_curves.png"]
    fig.savefig(written[0], dpi=100)
    plt.close(fig)
    for k, r in zip(results["horizons"], results["model"], strict=True):
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ma-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--baselines", action="store_true",
                        help="also fit logistic regression and a dense causal transformer")
    parser.add_argument("--plots", type=Path, help="write PNG plots into this folder")
    parser.add_argument("--json", type=Path, help="write every metric as JSON here")
    args = parser.parse_args(argv)
    try:
        results = evaluate_checkpoint(args.checkpoint, args.split, args.baselines)
    except ValueError as e:  # CheckpointError and config/data errors
        parser.exit(2, f"ma-eval: error: {e}\n")
    print(f"\n{args.split} split of {args.checkpoint}\n")
    print(summary_table(results))
    for k, r in zip(results["horizons"], results["model"], strict=True):
        print(f"\nMA-Transformer, horizon {k}\n{class_report(r)}")
    if args.plots:
        for path in plot(results, args.plots):
            print(f"wrote {path}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

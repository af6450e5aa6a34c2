"""Evaluation: ``ma-eval --checkpoint runs/default/best.pt [--baselines]``.

Rebuilds the checkpoint's splits (its data config, its train-fitted
normalisation) and scores a split per horizon. Every model is scored on the
same rows: windows of L ticks every L/2, each scoring its last L/2 positions,
so every scored tick has at least L/2 ticks of context.

Baselines on the same splits and rows (:data:`BASELINES`, any subset):
the majority class, logistic regression and gradient-boosted trees on the
same per-tick spec features, and the same network with dense causal
attention (SDPA) trained with the same config and seed. Each trains within
``train.max_minutes``. Several checkpoints (one per seed) give the mean and
spread of every metric.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .baselines import TABULAR, fit_gbt, fit_logistic, fit_majority
from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, config_from_dict
from .data import Splits, TickArrays, WindowDataset, load_splits
from .distributed import resolve_device
from .fit import fit, model_config
from .inputs import ModelInputs
from .metrics import classification_report, confusion_matrix
from .model import MATransformer


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
    ``[x, log1p(dt)]`` (:func:`ma_model.baselines.fit_logistic`)."""
    return fit_logistic(train, steps, seed)


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


BASELINES = (*TABULAR, "dense")
NAMES = {"model": "MA-Transformer", "majority": "majority class",
         "logistic": "logistic regression", "gbt": "gradient-boosted trees",
         "dense": "dense causal transformer"}


def baseline_names(text: str) -> tuple[str, ...]:
    """``--baselines`` value: ``all`` or a comma-separated subset of :data:`BASELINES`."""
    if text == "all":
        return BASELINES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise ValueError(f"--baselines: unknown {unknown or text!r}; choose 'all' or a "
                         f"comma-separated subset of {list(BASELINES)}")
    return names


def segment_f1(pred: torch.Tensor, labels: torch.Tensor, segments: int) -> list[list[float]]:
    """Macro F1 ``[segment][horizon]`` over ``segments`` consecutive, equal
    runs of the scored rows (they are in time order): how steady a model is
    through the split, walk-forward style, without retraining."""
    if segments < 1 or segments > len(pred):
        raise ValueError(f"--segments must be between 1 and the {len(pred)} scored rows, "
                         f"got {segments}")
    return [[r["macro_f1"] for r in report(p, y)]
            for p, y in zip(pred.tensor_split(segments), labels.tensor_split(segments),
                            strict=True)]


def evaluate_checkpoint(path: str | Path, split: str = "test",
                        baselines: bool | tuple[str, ...] = (), log=print,
                        segments: int = 1) -> dict:
    """``{"model": [per-horizon reports], <baseline>: ..., "alpha", "horizons",
    "history", "seed"}`` on ``split``; ``baselines``: names of
    :data:`BASELINES` (True: all of them). ``segments`` > 1 adds
    ``"segments": {model: macro F1 [segment][horizon]}`` (:func:`segment_f1`)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    baselines = BASELINES if baselines is True else tuple(baselines or ())
    ckpt = load_checkpoint(path)
    cfg = _config_of(ckpt, path)
    model = _model_from(ckpt, path)
    splits: Splits = load_splits(cfg.data, _inputs_of(ckpt, path).state_dict())
    if split == "val" and not len(splits.val.x):
        raise ValueError(f"{path}: its run has no validation split (data.val_fraction 0)")
    device = resolve_device(cfg.train.device)
    model = model.to(device)
    arrays, length = getattr(splits, split), cfg.data.sequence_length
    results: dict = {"segments": {}}

    def score(name, predict):
        pred, labels = scored_rows(arrays, length, predict)
        results[name] = report(pred, labels)
        if segments > 1:
            results["segments"][name] = segment_f1(pred, labels, segments)

    score("model", network_predictor(model, device))
    seed, budget = cfg.train.seed, cfg.train.max_minutes
    for name in baselines:
        deadline = None if budget is None else time.monotonic() + 60 * budget
        log(f"baseline: {NAMES[name]} (seed {seed})")
        if name == "majority":
            predict = fit_majority(splits.train)
        elif name == "logistic":
            predict = fit_logistic(splits.train, seed=seed, deadline=deadline)
        elif name == "gbt":
            predict = fit_gbt(splits.train, seed=seed, deadline=deadline)
        elif name == "dense":
            dense_cfg = replace(cfg, model=replace(cfg.model, attention="sdpa_dense"),
                                train=replace(cfg.train, out_dir=str(Path(path).parent / "dense")))
            dense = fit(dense_cfg, data=splits, log=log)
            dense_model = MATransformer(model_config(dense_cfg)).to(device)
            dense_model.load_state_dict(load_checkpoint(dense["best"])["model"])
            predict = network_predictor(dense_model, device)
        else:
            raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
        score(name, predict)
    results["history"] = ckpt["history"]
    results["horizons"] = list(cfg.data.horizons)
    results["alpha"] = list(splits.train.alpha)
    results["seed"] = seed
    return results


def evaluate_runs(paths: list[str | Path], split: str = "test",
                  baselines: bool | tuple[str, ...] = (), log=print,
                  segments: int = 1) -> dict:
    """:func:`evaluate_checkpoint` of each checkpoint (one per seed, same
    data config) and ``summary``: model -> metric -> per-horizon mean, spread
    (sample standard deviation, 0 for one run) and the values."""
    runs = [evaluate_checkpoint(p, split, baselines, log, segments) for p in paths]
    horizons = runs[0]["horizons"]
    for path, run in zip(paths, runs, strict=True):
        if run["horizons"] != horizons or run["alpha"] != runs[0]["alpha"]:
            raise ValueError(f"{path}: its horizons/alpha {run['horizons']}/{run['alpha']} differ "
                             f"from {paths[0]}'s: the runs must share one data config")
    summary = {}
    for name in (n for n in NAMES if n in runs[0]):
        summary[name] = {}
        for metric in ("accuracy", "macro_f1", "mcc"):
            per_h = [[run[name][h][metric] for run in runs] for h in range(len(horizons))]
            summary[name][metric] = [
                {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                 "values": v} for v in per_h]
    return {"runs": runs, "summary": summary, "horizons": horizons, "alpha": runs[0]["alpha"],
            "seeds": [run["seed"] for run in runs]}


def summary_table(results: dict) -> str:
    """Markdown table: model x horizon -> accuracy, macro F1, MCC; mean ±
    spread over the runs of :func:`evaluate_runs` (a bare
    :func:`evaluate_checkpoint` result counts as one run)."""
    if "summary" not in results:
        results = _as_runs(results)
    lines = ["| model | horizon | accuracy | macro F1 | MCC |", "|---|---|---|---|---|"]
    several = len(results["runs"]) > 1
    for key, metrics in results["summary"].items():
        for h, k in enumerate(results["horizons"]):
            cells = [f"{m[h]['mean']:.4f}" + (f" ± {m[h]['std']:.4f}" if several else "")
                     for m in (metrics[x] for x in ("accuracy", "macro_f1", "mcc"))]
            lines.append(f"| {NAMES[key]} | {k} | {' | '.join(cells)} |")
    return "\n".join(lines)


def segment_table(results: dict) -> str:
    """Markdown table of :func:`segment_f1` over every run's segments: per
    model and horizon the mean, spread and worst segment's macro F1."""
    lines = ["| model | horizon | segments | mean macro F1 | sd | worst |",
             "|---|---|---|---|---|---|"]
    for name in NAMES:
        per_run = [run["segments"][name] for run in results["runs"] if name in run["segments"]]
        for h, k in enumerate(results["horizons"]):
            values = [seg[h] for segs in per_run for seg in segs]
            if len(values) > 1:
                lines.append(f"| {NAMES[name]} | {k} | {len(values)} | "
                             f"{statistics.fmean(values):.4f} | {statistics.stdev(values):.4f} | "
                             f"{min(values):.4f} |")
    return "\n".join(lines)


def _as_runs(result: dict) -> dict:
    summary = {name: {metric: [{"mean": r[metric], "std": 0.0, "values": [r[metric]]}
                               for r in result[name]]
                      for metric in ("accuracy", "macro_f1", "mcc")}
               for name in NAMES if name in result}
    return {"runs": [result], "summary": summary, "horizons": result["horizons"]}


def class_report(r: dict) -> str:
    rows = [f"{'class':>11} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, c in zip(("down", "stationary", "up"), r["per_class"], strict=True):
        rows.append(f"{name:>11} {c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:7.4f} "
                    f"{c['support']:8d}")
    rows.append(f"confusion (rows true, columns predicted): {r['confusion']}")
    return "\n".join(rows)


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
        results = _as_runs(results)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ma-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, nargs="+",
                        help="one checkpoint, or one per seed of the same config")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--baselines", nargs="?", const="all", default="",
                        help=f"'all' (the default when given bare) or a comma-separated subset "
                             f"of {','.join(BASELINES)}")
    parser.add_argument("--segments", type=int, default=1,
                        help="also score N consecutive segments of the split (walk-forward "
                             "style, no retraining): mean, spread and worst macro F1")
    parser.add_argument("--plots", type=Path, help="write PNG plots into this folder")
    parser.add_argument("--json", type=Path, help="write every metric as JSON here")
    args = parser.parse_args(argv)
    try:
        baselines = baseline_names(args.baselines) if args.baselines else ()
        results = evaluate_runs(args.checkpoint, args.split, baselines, segments=args.segments)
    except ValueError as e:  # CheckpointError and config/data errors
        parser.exit(2, f"ma-eval: error: {e}\n")
    paths = ", ".join(map(str, args.checkpoint))
    print(f"\n{args.split} split of {paths} (seeds {results['seeds']}, alpha per horizon "
          f"{[f'{a:.3g}' for a in results['alpha']]})\n")
    print(summary_table(results))
    if args.segments > 1:
        print(f"\n{args.segments} consecutive segments of the {args.split} split, every run\n")
        print(segment_table(results))
    first = results["runs"][0]
    for k, r in zip(results["horizons"], first["model"], strict=True):
        print(f"\nMA-Transformer, horizon {k}, seed {first['seed']}\n{class_report(r)}")
    if args.plots:
        for path in plot(results, args.plots):
            print(f"wrote {path}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

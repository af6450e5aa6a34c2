"""Walk-forward evaluation with retraining: the test region (the last
``data.test_fraction`` of the rows) is cut into consecutive folds, and each
fold is scored by models trained afresh on the rows before it, as a model
retrained every period would be used. Everything a fold's models learn
from, normalisation and the TLOB threshold included, precedes the fold.

Over the validation region instead (``region="val"``), nothing at or after
the test region is read: a development protocol for choosing a
configuration, where every model is scored on rows none of them chose an
epoch or a tree on (a fit's own validation split flatters the network,
which early-stops on it: docs/results.md, rounds 7 and 8)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from .config import Config, DataConfig
from .contenders import fit_baseline
from .data import load_ticks, prepare, split_ranges, tick_arrays
from .distributed import resolve_device
from .fit import fit
from .restore import load_model
from .scoring import network_predictor, report, scored_rows
from .tables import summarize


def fold_ranges(n: int, cfg: DataConfig, folds: int,
                region: str = "test") -> list[dict[str, tuple[int, int]]]:
    """Row ranges of each fold's train, val and test, in time order. Fold j
    tests the j-th of ``folds`` equal runs of the ``region`` ("test": the
    last ``test_fraction`` of the ``n`` rows; "val": the validation split of
    :func:`ma_model.data.split_ranges`); its validation split is the
    ``val_fraction * n`` rows before that (none when 0), its training split
    every row before that, with gaps of ``max(horizons) + sequence_length``
    rows between them, as in :func:`~ma_model.data.split_ranges`, whose train
    and val fold 0 of the test region shares."""
    gap = max(cfg.horizons) + cfg.sequence_length
    n_val = int(n * cfg.val_fraction)
    if region not in ("test", "val"):
        raise ValueError(f"walk-forward region must be 'test' or 'val', got {region!r}")
    if region == "val" and not n_val:
        raise ValueError("walk-forward over the validation region: data.val_fraction is 0")
    first, last = split_ranges(n, cfg)["val"] if region == "val" else (
        n - int(n * cfg.test_fraction), n)
    if folds < 1 or (last - first) // folds < cfg.sequence_length:
        raise ValueError(f"--walk-forward {folds}: each fold needs at least sequence_length "
                         f"{cfg.sequence_length} of the {last - first} {region} rows")
    bounds = [first + (last - first) * j // folds for j in range(folds + 1)]
    out = []
    for start, stop in itertools.pairwise(bounds):
        val_stop = start - gap
        train_stop = val_stop - n_val - gap if n_val else val_stop
        val = (val_stop - n_val, val_stop) if n_val else (train_stop, train_stop)
        out.append({"train": (0, train_stop), "val": val, "test": (start, stop)})
    return out


def walk_forward(cfg: Config, folds: int, baselines: tuple[str, ...] = (), log=print,
                 region: str = "test") -> dict:
    """Trains ``cfg`` (and each of ``baselines``) once per fold of
    :func:`fold_ranges` over ``region``, under ``<train.out_dir>/fold=<j>``,
    and scores each on its fold's rows; returns ``{"folds": [{"ranges",
    "alpha", model name: [per-horizon reports]}], "summary": mean and spread
    over the folds (:func:`ma_model.tables.summarize`), "horizons", "seed",
    "region"}``."""
    ticks = load_ticks(cfg.data)
    device = resolve_device(cfg.train.device)
    results = []
    for j, ranges in enumerate(fold_ranges(len(ticks), cfg.data, folds, region)):
        out_dir = Path(cfg.train.out_dir) / f"fold={j}"
        log(f"walk-forward fold {j + 1}/{folds}: train rows {ranges['train']}, "
            f"test rows {ranges['test']}")
        arrays = tick_arrays(ticks, cfg.data.features, cfg.data.horizons, cfg.data.alpha,
                             train_stop=ranges["train"][1])
        splits = prepare(arrays, cfg.data, ranges=ranges)
        fold_cfg = replace(cfg, train=replace(cfg.train, out_dir=str(out_dir)))
        model, _ = load_model(fit(fold_cfg, data=splits, log=log)["best"], device)
        fold = {"ranges": ranges, "alpha": list(splits.train.alpha)}
        predictors = {"model": network_predictor(model, device)}
        for name in baselines:
            predictors[name] = fit_baseline(name, fold_cfg, splits, out_dir / "dense", device,
                                            log)
        for name, predict in predictors.items():
            fold[name] = report(*scored_rows(splits.test, cfg.data.sequence_length, predict))
        results.append(fold)
    return {"folds": results, "summary": summarize(results), "horizons": list(cfg.data.horizons),
            "seed": cfg.train.seed, "region": region}

"""Grid search: every point of ``param_grid`` trained by :func:`fit`, the
best by validation loss, within one ``train.max_minutes``."""

from __future__ import annotations

import time
from dataclasses import replace

from .config import Config
from .data import load_splits
from .fit import fit


def grid_search(cfg: Config, *, resume: bool = False, log=print) -> dict:
    """Trains every point of ``cfg.param_grid``; returns the best run's result
    with ``"config"`` and a ``"runs"`` table (config name, best val loss)."""
    runs, best = [], None
    splits = {}  # one set of splits per feature spec, shared by the points that read it
    points = cfg.grid()
    deadline = None if cfg.train.max_minutes is None else \
        time.monotonic() + 60 * cfg.train.max_minutes
    for i, point in enumerate(points):
        if deadline is not None:  # each point its share of what is left
            share = (deadline - time.monotonic()) / 60 / (len(points) - i)
            if share <= 0:
                log(f"time budget spent: train.max_minutes {cfg.train.max_minutes}; "
                    f"{len(points) - i} grid points not trained")
                break
            point = replace(point, train=replace(point.train, max_minutes=share))
        log(f"== {point.train.out_dir}")
        data = None
        if not resume:
            if point.data.features not in splits:
                splits[point.data.features] = load_splits(point.data)
            data = splits[point.data.features]
        result = fit(point, data=data, resume=resume, log=log)
        runs.append({"out_dir": point.train.out_dir, "best_val_loss": result["best_val_loss"]})
        # Without a validation split every loss is inf: the first point stands.
        if best is None or result["best_val_loss"] < best["best_val_loss"]:
            best = {**result, "config": point}
    if best is None:
        raise ValueError(f"train.max_minutes {cfg.train.max_minutes} left no time for any "
                         "grid point")
    best["runs"] = runs
    return best

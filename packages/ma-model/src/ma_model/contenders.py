"""The baselines ma-eval trains beside a checkpoint, by name
(:data:`BASELINES`): the per-tick ones of :mod:`ma_model.baselines` and the
same network with dense causal attention (SDPA), trained with the same
config, seed and class weights, each within ``train.max_minutes``. With
``train.mirror`` every learned baseline gets the augmentation the network
gets: the dense network the same mirrored windows (it trains through
:func:`ma_model.fit.fit`), the logistic regression and the trees the mirrors
of a ``train.mirror`` fraction of their rows
(:class:`ma_model.baselines.TabularMirror`)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from .baselines import TABULAR, TabularMirror, fit_gbt, fit_logistic, fit_majority
from .checkpoint import load_checkpoint
from .config import Config
from .data import Splits
from .fit import class_weights, fit, model_config
from .model import MATransformer
from .scoring import network_predictor

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


def fit_baseline(name: str, cfg: Config, splits: Splits, out_dir: str | Path,
                 device: torch.device, log=print):
    """The predictor of baseline ``name`` trained on ``splits.train`` (the
    dense network also early-stops on ``splits.val`` and writes its
    checkpoints under ``out_dir``)."""
    seed, budget = cfg.train.seed, cfg.train.max_minutes
    deadline = None if budget is None else time.monotonic() + 60 * budget
    weights = class_weights(cfg.train, splits)
    if name == "majority":
        return fit_majority(splits.train)
    mirror = TabularMirror.of(cfg.train.mirror, splits.inputs, seed)
    if name == "logistic":
        return fit_logistic(splits.train, seed=seed, deadline=deadline, class_weights=weights,
                            mirror=mirror)
    if name == "gbt":
        return fit_gbt(splits.train, seed=seed, deadline=deadline, class_weights=weights,
                       gap=max(cfg.data.horizons), mirror=mirror)
    if name == "dense":
        dense_cfg = replace(cfg, model=replace(cfg.model, attention="sdpa_dense"),
                            train=replace(cfg.train, out_dir=str(out_dir)))
        dense = fit(dense_cfg, data=splits, log=log)
        model = MATransformer(model_config(dense_cfg)).to(device)
        model.load_state_dict(load_checkpoint(dense["best"])["model"])
        return network_predictor(model, device)
    raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")

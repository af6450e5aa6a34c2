"""Small engines and simulated ticks for the runtime's tests."""

import numpy as np
import pytest
import torch

import ma_features
import ma_model
from ma_runtime import StreamEngine

HORIZONS = [5, 20]
WINDOWS = ma_features.FeatureSpec(rolling=("ofi", "realized_variance"), windows=(3,),
                                  time_windows=(40,))


def small_config(features=None, model_dim: int = 16) -> ma_model.Config:
    data = {"horizons": HORIZONS}
    if features is not None:
        data["features"] = features.to_dict()
    return ma_model.config_from_dict({
        "model": {"model_dim": model_dim, "num_heads": 2, "num_layers": 2, "window": 4,
                  "dilations": [1, 2], "mlp_ratio": 2},
        "data": data,
    })


def small_model(cfg: ma_model.Config) -> ma_model.MATransformer:
    torch.manual_seed(0)
    return ma_model.MATransformer(ma_model.model_config(cfg)).eval()


def fitted_inputs(spec: ma_features.FeatureSpec, rolling: int | None = None,
                  ) -> ma_model.ModelInputs:
    train = ticks_of(2000, seed=99)
    raw = ma_model.raw_columns(train, spec)
    return ma_model.ModelInputs.fit(spec, raw["x"], raw["dt"], rolling)


def ticks_of(n: int, seed: int, levels: int = 2) -> ma_features.Ticks:
    """Simulated ticks at times 0-3 ns apart (ties included), so time windows hold a few."""
    ticks = ma_features.simulate(n, levels=levels, seed=seed)
    gaps = np.random.default_rng(seed).integers(0, 4, n)
    return ma_features.Ticks(**{**vars(ticks), "time": np.cumsum(gaps).astype(np.int64)})


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def engine_for(spec=None, instruments: int = 1, rolling: int | None = None,
               **options) -> StreamEngine:
    cfg = small_config(spec)
    return StreamEngine(small_model(cfg), fitted_inputs(cfg.data.features, rolling),
                        instruments=instruments, **options)

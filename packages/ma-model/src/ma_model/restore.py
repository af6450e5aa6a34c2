"""A trained model back from its ma-train checkpoint: its config, the
network with its weights, and what it reads (its feature spec with the
statistics fitted on its train split). Anything that is not a finished
ma-train checkpoint raises :class:`~ma_model.checkpoint.CheckpointError`
naming the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, config_from_dict
from .fit import model_config
from .inputs import ModelInputs
from .model import MATransformer


def load_model(path: str | Path,
               device: str | torch.device = "cpu") -> tuple[MATransformer, ModelInputs]:
    """The trained model of a checkpoint, on ``device`` in eval mode, and what it reads."""
    ckpt = load_checkpoint(path)
    model = model_of(ckpt, path).to(device).eval()
    return model, inputs_of(ckpt, path)


def entry(ckpt: dict, key: str, path: str | Path):
    """``ckpt[key]``, or a CheckpointError saying the file is no ma-train checkpoint."""
    if key not in ckpt:
        raise CheckpointError(f"{path}: no {key!r} entry; it was not written by ma-train "
                              f"(it holds {sorted(ckpt)})")
    return ckpt[key]


def config_of(ckpt: dict, path: str | Path) -> Config:
    try:
        return config_from_dict(entry(ckpt, "config", path), f"{path} config")
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(str(e)) from e


def inputs_of(ckpt: dict, path: str | Path) -> ModelInputs:
    try:
        return ModelInputs.from_state(config_of(ckpt, path).data.features,
                                      entry(ckpt, "normalization", path))
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(f"{path}: its normalization does not fit its features: {e}") from e


def model_of(ckpt: dict, path: str | Path) -> MATransformer:
    model = MATransformer(model_config(config_of(ckpt, path)))
    weights = entry(ckpt, "model", path)
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

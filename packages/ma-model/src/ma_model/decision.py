"""Decision rules: which class a model's probabilities ``[..., 3]`` (down,
stationary, up) predict. ``argmax`` is the default; ``validation`` adds
offsets to the log-probabilities of down and up (stationary's stays 0),
chosen per horizon to maximise macro F1 on the model's own predictions on
the validation split (:func:`fit_offsets`), and applies them to its test
predictions (:func:`apply_offsets`). Argmax is not the macro-F1-optimal rule
when the classes are imbalanced; the offsets move the boundaries between
them. The fit sees validation probabilities and labels only."""

from __future__ import annotations

import torch

import ma_features

RULES = ("argmax", "validation")
#: The offsets tried for down and for up: -2 .. 2 in steps of 0.05 (0 included exactly).
GRID = torch.arange(-40, 41, dtype=torch.float64) * 0.05


def fit_offsets(log_probabilities: torch.Tensor, labels: torch.Tensor,
                grid: torch.Tensor = GRID) -> torch.Tensor:
    """Offsets ``[H, 3]`` (``[:, 1]`` = 0) to add to ``log_probabilities``
    ``[rows, H, 3]`` that maximise, per horizon, the macro F1 of their argmax
    against ``labels`` ``[rows, H]`` (``IGNORE_INDEX`` rows left out), over
    every pair of ``grid`` values for down and up. Ties go to the smallest
    ``|down| + |up|``, then the first in grid order: deterministic, and no
    offsets where argmax is already optimal."""
    if log_probabilities.shape[:-1] != labels.shape or log_probabilities.shape[-1] != 3:
        raise ValueError(f"log-probabilities {tuple(log_probabilities.shape)} and labels "
                         f"{tuple(labels.shape)} do not match as [rows, H, 3] and [rows, H]")
    grid = grid.double()
    down, up = (g.flatten() for g in torch.meshgrid(grid, grid, indexing="ij"))
    candidates = torch.stack([down, torch.zeros_like(down), up], -1)  # [G, 3]
    offsets = torch.zeros(labels.shape[1], 3, dtype=torch.float64)
    for h in range(labels.shape[1]):
        keep = labels[:, h] != ma_features.IGNORE_INDEX
        if not keep.any():
            continue
        scores = torch.stack([
            _macro_f1(log_probabilities[keep, h].double(), labels[keep, h], chunk)
            for chunk in candidates.split(len(grid))]).flatten()
        best = scores.max()
        tied = (scores == best).nonzero().flatten()
        size = candidates[tied].abs().sum(-1)
        offsets[h] = candidates[tied[size.argmin()]]  # argmin: the first of equal sizes
    return offsets


def log_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """float64 logs of ``probabilities``, a zero probability at log(1e-12)."""
    return probabilities.double().clamp_min(1e-12).log()


def apply_offsets(probabilities: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``probabilities [rows, H, 3]`` moved by ``offsets [H, 3]`` on the log
    scale and renormalised: their argmax is the rule's class."""
    shifted = log_probabilities(probabilities) + offsets.to(probabilities.device)
    return shifted.softmax(-1).to(probabilities.dtype)


def validation_rule(val: tuple[torch.Tensor, torch.Tensor], probabilities: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities moved by the offsets fitted on val, the offsets)``:
    ``val`` is ``(probabilities, labels)`` of the validation rows; of the
    scored split only its probabilities are passed, never its labels."""
    offsets = fit_offsets(log_probabilities(val[0]), val[1])
    return apply_offsets(probabilities, offsets), offsets


def _macro_f1(log_probabilities: torch.Tensor, labels: torch.Tensor,
              candidates: torch.Tensor) -> torch.Tensor:
    """Macro F1 ``[G]`` of ``argmax(log_probabilities + candidates[g])``."""
    pred = (log_probabilities[None] + candidates[:, None]).argmax(-1)  # [G, rows]
    cells = torch.arange(len(candidates))[:, None] * 9 + labels.long()[None] * 3 + pred
    counts = torch.bincount(cells.flatten(), minlength=9 * len(candidates)).view(-1, 3, 3)
    counts = counts.double()
    tp = counts.diagonal(dim1=1, dim2=2)
    predicted, actual = counts.sum(1), counts.sum(2)
    # F1 = 2 tp / (predicted + actual), 0 where the class is neither predicted nor present
    f1 = torch.where(predicted + actual > 0, 2 * tp / (predicted + actual).clamp_min(1), 0.0)
    return f1.mean(-1)

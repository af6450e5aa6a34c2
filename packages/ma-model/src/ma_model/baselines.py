"""Per-tick baselines of ma-eval, fitted on the training split's rows: the
majority class, logistic regression and gradient-boosted trees on the same
spec features the network reads (its rolling windows included) plus
``log1p(dt)``.

Each ``fit_*`` returns a predictor with the network's signature,
``predict(x [B, L, F], dt [B, L]) -> probabilities [B, L, H, 3]`` (argmax is
the class), so :func:`ma_model.scoring.scored_rows` scores every model on the
same rows. ``deadline`` (a ``time.monotonic()``) is a training time budget:
a baseline stops adding iterations once it passes and keeps what it has.
``mirror`` (:class:`TabularMirror`, from ``train.mirror``): the logistic
regression and the trees fit the training rows plus the bid/ask mirrors of a
fraction of them, the tabular form of the network's mirrored windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import ma_features

from .data import TickArrays, mirror_rows
from .inputs import ModelInputs
from .step import label_weights

TABULAR = ("majority", "logistic", "gbt")
"""The baselines of this module; ma-eval adds ``dense`` (the network with dense attention)."""


def tabular_inputs(x: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """One tick's inputs ``[..., F + 1]``: the spec's columns and ``log1p(dt)``."""
    return torch.cat([x, torch.log1p(dt).unsqueeze(-1)], dim=-1)


@dataclass(frozen=True)
class TabularMirror:
    """``train.mirror`` for the per-tick baselines: the rows they fit are
    followed by the bid/ask mirrors (:func:`ma_model.data.mirror_rows`) of
    ``round(fraction * N)`` of their N rows, drawn without replacement with
    ``seed``. ``sign``, ``offset``: ``[F + 1]``, those of
    :meth:`ma_model.inputs.ModelInputs.mirror` for the spec's columns and the
    identity for ``log1p(dt)`` (:func:`tabular_inputs`; the time between
    events is the same in the mirrored book)."""

    fraction: float
    sign: torch.Tensor
    offset: torch.Tensor
    seed: int = 0

    @classmethod
    def of(cls, fraction: float, inputs: ModelInputs, seed: int = 0) -> TabularMirror | None:
        """The mirror of ``inputs``' columns, or None where ``fraction`` is 0."""
        if fraction <= 0:
            return None
        sign, offset = inputs.mirror()
        return cls(fraction, torch.cat([sign, sign.new_ones(1)]),
                   torch.cat([offset, offset.new_zeros(1)]), seed)

    def extend(self, rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
        """``rows [N, F + 1]`` (:func:`tabular_inputs`) and their ``labels
        [N]`` or ``[N, H]``, followed by the mirrors of the drawn rows."""
        generator = torch.Generator().manual_seed(self.seed)
        drawn = torch.randperm(len(rows), generator=generator)[:round(self.fraction * len(rows))]
        drawn = drawn.sort().values
        mirrored, swapped = mirror_rows(rows[drawn], labels[drawn], self.sign, self.offset)
        return torch.cat([rows, mirrored]), torch.cat([labels, swapped])


def _defined(train: TickArrays, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows with a label at horizon ``h``: ``(inputs, labels)``, in time order."""
    rows = train.labels[:, h] != ma_features.IGNORE_INDEX
    if not bool(rows.any()):
        raise ValueError(f"the training split has no defined label at horizon index {h}")
    return (tabular_inputs(train.x, train.dt)[rows].double().numpy(),
            train.labels[rows, h].numpy())


def time_holdout(n: int, fraction: float, gap: int) -> tuple[slice, slice]:
    """``(fit, holdout)`` row slices of ``n`` rows in time order: the holdout
    is the last ``fraction`` of them, and ``gap`` rows before it are in
    neither (their labels read mids inside the holdout)."""
    held = max(1, int(n * fraction))
    if n - held - gap < 1:
        raise ValueError(f"{n} training rows leave none to fit beside a holdout of {held} "
                         f"and a gap of {gap}")
    return slice(0, n - held - gap), slice(n - held, n)


def _per_horizon(models: list, score) -> callable:
    """A predictor from one fitted model per horizon and ``score(model, rows
    [N, F+1] numpy) -> [N, 3]``."""
    def predict(x, dt):
        rows = tabular_inputs(x, dt).flatten(0, -2).double().numpy()
        out = np.stack([score(m, rows) for m in models], axis=1)  # [N, H, 3]
        return torch.from_numpy(out).float().reshape(*x.shape[:-1], len(models), 3)
    return predict


def fit_majority(train: TickArrays) -> callable:
    """The most frequent training class of each horizon, everywhere."""
    classes = []
    for h in range(train.labels.shape[1]):
        _, y = _defined(train, h)
        classes.append(int(np.bincount(y, minlength=3).argmax()))
    return _per_horizon(classes, lambda c, rows: np.eye(3)[np.full(len(rows), c)])


def fit_logistic(train: TickArrays, steps: int = 300, seed: int = 0,
                 deadline: float | None = None,
                 class_weights: torch.Tensor | None = None,
                 mirror: TabularMirror | None = None) -> callable:
    """Multinomial logistic regression per horizon, full-batch L-BFGS on
    the train rows (inputs are standardised by the split, so it converges in
    a few hundred iterations), with ``mirror``'s rows added; run in rounds of
    20 so a deadline can stop it."""
    torch.manual_seed(seed)
    horizons = train.labels.shape[1]
    linear = nn.Linear(train.x.shape[1] + 1, 3 * horizons)
    features, labels = tabular_inputs(train.x, train.dt), train.labels
    if mirror is not None:
        features, labels = mirror.extend(features, labels)
    weights = label_weights(labels, class_weights).reshape(-1)
    loss_fn = nn.CrossEntropyLoss(ignore_index=ma_features.IGNORE_INDEX, reduction="none")
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        losses = loss_fn(linear(features).view(-1, 3), labels.reshape(-1))
        loss = (losses * weights).sum() / weights.sum()
        loss.backward()
        return loss

    for _ in range(max(1, steps // 20)):
        optimizer.step(closure)
        if deadline is not None and time.monotonic() >= deadline:
            break

    @torch.no_grad()
    def predict(x, dt):
        return linear(tabular_inputs(x, dt)).unflatten(-1, (horizons, 3)).softmax(-1)
    return predict


def logistic_regression(train: TickArrays, steps: int = 300, seed: int = 0):
    """:func:`fit_logistic` without a deadline or class weights (the public name)."""
    return fit_logistic(train, steps, seed)


def fit_gbt(train: TickArrays, seed: int = 0, deadline: float | None = None,
            max_iter: int = 100, chunk: int = 25, holdout: float = 0.1, gap: int = 0,
            class_weights: torch.Tensor | None = None,
            mirror: TabularMirror | None = None) -> callable:
    """scikit-learn's HistGradientBoostingClassifier per horizon (its defaults: at most
    100 iterations of 31-leaf trees, learning rate 0.1), early-stopped on
    the last ``holdout`` of the train rows by time (:func:`time_holdout`,
    ``gap``: the longest horizon), as the network's validation split is
    later than its training rows: a random holdout would score the trees on
    ticks interleaved with the ones they fit. ``mirror`` adds the mirrors
    of some of the rows fitted, not of the holdout's (the network's
    validation split is never mirrored either). Trees are added ``chunk`` at
    a time (warm start) so a deadline can end the growth."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError as e:
        raise ValueError("the gbt baseline needs scikit-learn: pip install "
                         "'ma-model[baselines]'") from e

    models = []
    for h in range(train.labels.shape[1]):
        x, y = _defined(train, h)
        fit_rows, held = time_holdout(len(y), holdout, gap)
        weights = (None if class_weights is None  # a class never seen has no key
                   else {c: float(w) for c, w in enumerate(class_weights[h]) if w > 0})
        model = HistGradientBoostingClassifier(max_iter=chunk, early_stopping=True,
                                               random_state=seed, warm_start=True,
                                               class_weight=weights)
        rows, held_out = (x[fit_rows], y[fit_rows]), {"X_val": x[held], "y_val": y[held]}
        if mirror is not None:
            rows = tuple(t.numpy() for t in mirror.extend(*map(torch.from_numpy, rows)))
        model.fit(*rows, **held_out)
        while (model.n_iter_ == model.max_iter < max_iter
               and (deadline is None or time.monotonic() < deadline)):
            model.max_iter = min(max_iter, model.max_iter + chunk)
            model.fit(*rows, **held_out)
        models.append(model)
    return _per_horizon(models, _probabilities)


def _probabilities(model, rows: np.ndarray) -> np.ndarray:
    """``[N, 3]`` class probabilities, a zero column for a class never seen in training."""
    out = np.zeros((len(rows), 3))
    out[:, model.classes_] = model.predict_proba(rows)
    return out

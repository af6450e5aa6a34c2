"""Training targets: smoothed mid-price direction labels (DeepLOB / FI-2010)
and the future change of L1 imbalance, for several horizons at once.

Formulas, class coding and the masking policy: docs/labels.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ._tensors import require_finite, require_tensor, rolling_moments
from .compute import compute_features
from .masked import Masked
from .spec import FeatureSpec
from .ticks import Ticks

DOWN = 0
"""Class of a smoothed relative mid change below ``-alpha``."""
STATIONARY = 1
"""Class of a smoothed relative mid change within ``[-alpha, alpha]``."""
UP = 2
"""Class of a smoothed relative mid change above ``alpha``."""
NUM_CLASSES = 3
IGNORE_INDEX = -1
"""Label of a row with no complete future (or past) window; pass it as
``torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)``."""

CHANGE_TOLERANCE = 1e-12
"""Relative changes with ``|l| <= CHANGE_TOLERANCE`` are exactly 0: the rolling
means carry float64 rounding of ~1e-15, and a real move (one tick) is ~1e-7 or
more, so a flat future is :data:`STATIONARY` even at ``alpha = 0``."""

Reference = Literal["current", "past"]


def smoothed_mid_change(
    mid: torch.Tensor, horizons: int | Sequence[int], reference: Reference = "current"
) -> Masked:
    """Relative change ``l = (m+ - m) / m`` of the mean of the next k mids.

    Args:
        mid: ``[N]`` floating tensor of positive, finite mid prices, any device.
        horizons: k, or several; each a positive int.
        reference: ``"current"``: ``m`` is the mid at t (Ntakaris et al. 2018);
            ``"past"``: ``m`` is the mean of the k mids ``t-k+1 .. t`` (Zhang,
            Zohren and Roberts 2019).

    Returns:
        :class:`Masked` of ``[N, H]`` float64 changes on ``mid``'s device.
        Row t is valid for horizon k iff ``t + k <= N - 1`` (and, for
        ``"past"``, ``t >= k - 1``); invalid entries are 0, and so are
        changes within :data:`CHANGE_TOLERANCE`.
    """
    ks = _horizons(horizons)
    if reference not in ("current", "past"):
        raise ValueError(f"reference must be 'current' or 'past', got {reference!r}")
    require_tensor("mid", mid, ndims=(1,))
    require_finite("mid", mid)
    if bool((mid <= 0).any()):
        row = int((mid <= 0).nonzero()[0])
        raise ValueError(f"mid[{row}] is {mid[row].item()}: mid prices must be positive")

    n = len(mid)
    mid = mid.to(torch.float64)
    change = mid.new_zeros((n, len(ks)))
    valid = torch.zeros((n, len(ks)), dtype=torch.bool, device=mid.device)
    for h, k in enumerate(ks):
        if n <= k:
            continue
        mean, _ = rolling_moments(mid.unsqueeze(1), k, with_var=False)
        future = mean[k:, 0]  # mean of mids t+1 .. t+k, for t = 0 .. N-k-1
        if reference == "current":
            change[: n - k, h] = (future - mid[: n - k]) / mid[: n - k]
            valid[: n - k, h] = True
        else:
            past = mean[k - 1 : n - k, 0]  # mean of mids t-k+1 .. t, for t = k-1 .. N-k-1
            change[k - 1 : n - k, h] = (future[k - 1 :] - past) / past
            valid[k - 1 : n - k, h] = True
    change[change.abs() <= CHANGE_TOLERANCE] = 0
    return Masked(change, valid)


def direction_labels(
    mid: torch.Tensor,
    horizons: int | Sequence[int],
    alpha: float | Sequence[float],
    reference: Reference = "current",
) -> torch.Tensor:
    """Three-class labels of :func:`smoothed_mid_change` by threshold alpha.

    ``l > alpha`` is :data:`UP`, ``l < -alpha`` is :data:`DOWN`, otherwise
    :data:`STATIONARY`; rows without a complete window are
    :data:`IGNORE_INDEX`. ``alpha`` is one threshold or one per horizon.

    Returns:
        ``[N, H]`` int64 tensor on ``mid``'s device.
    """
    ks = _horizons(horizons)
    thresholds = _alphas(alpha, len(ks))
    change, valid = smoothed_mid_change(mid, ks, reference)
    a = torch.tensor(thresholds, dtype=change.dtype, device=change.device)
    labels = torch.full(change.shape, STATIONARY, dtype=torch.int64, device=change.device)
    labels[change > a] = UP
    labels[change < -a] = DOWN
    labels[~valid] = IGNORE_INDEX
    return labels


def imbalance_change(imbalance: torch.Tensor, horizons: int | Sequence[int]) -> Masked:
    """Regression target ``imbalance[t + k] - imbalance[t]`` per horizon k.

    Returns:
        :class:`Masked` of ``[N, H]`` values of ``imbalance``'s dtype and
        device; row t is valid for horizon k iff ``t + k <= N - 1``, and
        invalid entries are 0.
    """
    ks = _horizons(horizons)
    require_tensor("imbalance", imbalance, ndims=(1,))
    require_finite("imbalance", imbalance)
    n = len(imbalance)
    value = imbalance.new_zeros((n, len(ks)))
    valid = torch.zeros((n, len(ks)), dtype=torch.bool, device=imbalance.device)
    for h, k in enumerate(ks):
        if n > k:
            value[: n - k, h] = imbalance[k:] - imbalance[: n - k]
            valid[: n - k, h] = True
    return Masked(value, valid)


def direction_labels_from_ticks(
    ticks: Ticks,
    horizons: int | Sequence[int],
    alpha: float | Sequence[float],
    reference: Reference = "current",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """:func:`direction_labels` of the level-1 mid ``(bid + ask) / 2`` of ``ticks``."""
    mid = _feature_column(ticks, "mid", device)
    return direction_labels(mid, horizons, alpha, reference)


def imbalance_change_from_ticks(
    ticks: Ticks, horizons: int | Sequence[int], device: torch.device | str = "cpu"
) -> Masked:
    """:func:`imbalance_change` of the L1 imbalance ``(bid_size - ask_size) / depth``."""
    return imbalance_change(_feature_column(ticks, "imbalance", device), horizons)


def _feature_column(ticks: Ticks, name: str, device: torch.device | str) -> torch.Tensor:
    # The features' own definition, so labels and inputs agree.
    spec = FeatureSpec(instant=(name,), rolling=())
    return compute_features(ticks, spec, device=device, dtype=torch.float64)[0][:, 0]


def _horizons(horizons: int | Sequence[int]) -> list[int]:
    ks = list(horizons) if isinstance(horizons, Sequence) else [horizons]
    if not ks:
        raise ValueError("horizons must not be empty")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"each horizon must be a positive int, got {k!r}")
    return ks


def _alphas(alpha: float | Sequence[float], count: int) -> list[float]:
    alphas = list(alpha) if isinstance(alpha, Sequence) else [alpha] * count
    if len(alphas) != count:
        raise ValueError(f"alpha has {len(alphas)} values for {count} horizons")
    for a in alphas:
        if not (isinstance(a, (int, float)) and 0 <= a < float("inf")):
            raise ValueError(f"each alpha must be a finite number >= 0, got {a!r}")
    return [float(a) for a in alphas]

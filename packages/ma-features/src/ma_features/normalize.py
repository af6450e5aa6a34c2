"""Feature normalisation without look-ahead: a causal rolling z-score, and
statistics fitted on a training split and applied to later splits.

Both use the population standard deviation (ddof 0) and map a feature whose
standard deviation is at most ``eps`` to 0: it carries no information there,
and dividing by ~0 would blow rounding noise up into a signal.
"""

from __future__ import annotations

import torch

from ._tensors import require_finite, require_tensor, rolling_moments
from .masked import Masked


def rolling_zscore(
    x: torch.Tensor, window: int, min_periods: int | None = None, eps: float = 1e-12
) -> Masked:
    """Z-score of each row against the ``window`` rows ending at it (itself included).

    ``z[t] = (x[t] - mean) / std`` over rows ``max(0, t - window + 1) .. t``.
    Row t is available when it is observed, so this is causal: no output
    depends on a later row. Including the row bounds ``|z|`` by
    ``sqrt(window - 1)``, so a jump after a flat stretch cannot explode.

    Args:
        x: ``[N]`` or ``[N, F]`` finite floating tensor, any device; each
            column is normalised on its own.
        window: rows per window, >= 1.
        min_periods: rows a window needs to be valid (default ``window``).
        eps: a window with ``std <= eps`` gives ``z = 0``.

    Returns:
        :class:`Masked`: ``value`` of ``x``'s shape, dtype and device;
        ``valid`` ``[N]`` bool, False for the first ``min_periods - 1`` rows,
        whose ``value`` is 0.
    """
    require_tensor("x", x, ndims=(1, 2))
    require_finite("x", x)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    periods = window if min_periods is None else min_periods
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= window:
        raise ValueError(f"min_periods must be an int in [1, window={window}], got {periods!r}")
    _require_eps(eps)

    n = x.shape[0]
    valid = torch.arange(1, n + 1, device=x.device) >= periods
    if n == 0:
        return Masked(torch.zeros_like(x), valid)
    columns = x.to(torch.float64).reshape(n, -1)
    mean, var = rolling_moments(columns, window)
    std = var.sqrt()
    z = torch.where(std > eps, (columns - mean) / std, 0.0)
    z[~valid] = 0
    return Masked(z.reshape(x.shape).to(x.dtype), valid)


class Standardizer:
    """Per-feature mean and standard deviation fitted on one split (train)
    and applied unchanged to others (valid, test, live), so no statistic of a
    later split leaks into the model's inputs.

    ``state_dict()`` holds only tensors and numbers: it saves in a checkpoint
    and loads with ``torch.load(..., weights_only=True)``.
    """

    FORMAT_VERSION = 1

    def __init__(self, eps: float = 1e-12) -> None:
        _require_eps(eps)
        self.eps = float(eps)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> Standardizer:
        """Fit on ``[N]`` or ``[N, F]`` finite floating rows (N >= 1); stats kept as
        float64 on the CPU."""
        require_tensor("x", x, ndims=(1, 2))
        if x.shape[0] == 0:
            raise ValueError("cannot fit a Standardizer on 0 rows")
        require_finite("x", x)
        var, mean = torch.var_mean(x.to(torch.float64), dim=0, correction=0)
        self.mean, self.std = mean.cpu(), var.sqrt().cpu()
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the fitted stats, in ``x``'s dtype and device;
        features with ``std <= eps`` map to 0."""
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted: call fit() or load_state_dict() first")
        require_tensor("x", x, ndims=(1, 2))
        if x.shape[1:] != self.mean.shape:
            raise ValueError(
                f"x has feature shape {tuple(x.shape[1:])}, fitted on {tuple(self.mean.shape)}"
            )
        require_finite("x", x)
        shift, scale = self.affine(x.device)
        return ((x.to(torch.float64) - shift) * scale).to(x.dtype)

    def affine(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shift, scale)`` with ``transform(x) == (x - shift) * scale``: the
        fitted map as two tensors, for a caller that applies it where checks
        would read the device (a captured CUDA graph, a streaming step)."""
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted: call fit() or load_state_dict() first")
        scale = torch.where(self.std > self.eps, 1.0 / self.std, 0.0)
        return self.mean.to(device, dtype), scale.to(device, dtype)

    def fit_transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.fit(x).transform(x)

    def state_dict(self) -> dict[str, object]:
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer is not fitted: nothing to save")
        return {
            "format_version": self.FORMAT_VERSION,
            "eps": self.eps,
            "mean": self.mean.clone(),
            "std": self.std.clone(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        expected = {"format_version", "eps", "mean", "std"}
        if set(state) != expected:
            raise ValueError(
                f"Standardizer state has keys {sorted(state)}, expected {sorted(expected)}"
            )
        if state["format_version"] != self.FORMAT_VERSION:
            raise ValueError(
                f"Standardizer state format_version {state['format_version']!r}, "
                f"this version reads {self.FORMAT_VERSION}"
            )
        mean, std = state["mean"], state["std"]
        if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)):
            raise ValueError("Standardizer state 'mean' and 'std' must be tensors")
        if mean.shape != std.shape or mean.dim() > 1:
            raise ValueError(f"Standardizer state mean {tuple(mean.shape)}, std {tuple(std.shape)}")
        require_finite("state['mean']", mean)
        require_finite("state['std']", std)
        if bool((std < 0).any()):
            raise ValueError("Standardizer state 'std' has negative entries")
        _require_eps(state["eps"])
        self.eps = float(state["eps"])
        self.mean = mean.to("cpu", torch.float64).clone()
        self.std = std.to("cpu", torch.float64).clone()


def _require_eps(eps: object) -> None:
    if not (isinstance(eps, (int, float)) and 0 <= eps < float("inf")):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")

"""What the model reads, in one place: the columns of a ``FeatureSpec`` and
the time since the previous event (``dt``), both normalised with statistics
of the training split.

Batch (``ma_features.compute_features`` over ticks) and stream
(``ma_features.FeatureState`` one event at a time) compute the same spec, and
a checkpoint stores the spec (in its config) and the fitted statistics, so a
model reads in production what it read in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import ma_features

DT = "inter_arrival"
"""The spec column the model takes apart as ``dt`` (seconds since the previous event)."""
INPUT_LIMIT = 1e6
"""A standardised input beyond this many deviations is refused, in training,
evaluation and the engine (its ``overflow``): finite, but the model's float32
arithmetic would overflow on it (LayerNorm squares it)."""
SPIKE_QUANTILE = 0.99
"""A training value further from its column's median than ``INPUT_LIMIT``
times this quantile of the column's deviations is a spike: it would swamp
the column's deviation, so it is refused before the statistics are fitted."""


def raw_columns(ticks: ma_features.Ticks, spec: ma_features.FeatureSpec,
                extra: tuple[str, ...] = (), device: torch.device | str = "cpu",
                ) -> dict[str, torch.Tensor]:
    """``{"x": [N, F], "dt": [N], name: [N] for name in extra}``, float64 on
    ``device``, from one pass of the batch op: ``extra`` names instant
    features a caller needs beside the inputs (the mid of the labels)."""
    values, names = ma_features.compute_features(ticks, spec.including(DT, *extra),
                                                 device=device, dtype=torch.float64)
    # The added instant columns sit among the spec's own: pick the spec's by name.
    column = {name: values[:, i] for i, name in enumerate(names)}
    return {"x": values[:, [names.index(name) for name in spec.names]], "dt": column[DT],
            **{name: column[name] for name in extra}}


# How each column moves when the book is mirrored (bids and asks swapped,
# prices reflected, trade sides negated): odd columns change sign, even ones
# stay. Price levels (mid, microprice, vwap) have no mirror without a price
# to reflect about, so a spec with them cannot be mirrored.
MIRROR_ODD = ("imbalance", "ofi", "log_return", "signed_volume", "mid_change",
              "microprice_offset", "depth_imbalance_", "ofi_level_", "mlofi_", "ofi_sum_",
              "signed_volume_sum_")
MIRROR_EVEN = ("spread", "inter_arrival", "log_depth", "realized_variance_")


def mirror_parity(names: tuple[str, ...]) -> torch.Tensor:
    """``[F]`` float32: -1 for each column of ``names`` that changes sign
    when the book is mirrored, +1 for one that stays (:data:`MIRROR_ODD`,
    :data:`MIRROR_EVEN`; a name ending in ``_`` there is a prefix). A
    ValueError names the columns without a mirror (price levels)."""
    def matches(name: str, table: tuple[str, ...]) -> bool:
        return any(name.startswith(t) if t.endswith("_") else name == t for t in table)

    unknown = [n for n in names if not (matches(n, MIRROR_ODD) or matches(n, MIRROR_EVEN))]
    if unknown:
        raise ValueError(f"train.mirror: columns {unknown} have no bid/ask mirror (price "
                         "levels); drop them from data.features or set train.mirror to 0")
    return torch.tensor([-1.0 if matches(n, MIRROR_ODD) else 1.0 for n in names])


ROLLING_MIN_DEVIATION = 1e-3
"""The least deviation (in training-split deviations) a rolling window's
inputs are divided by: a column that stood still over the window reads as
its departure from that level, not as 0 / 0."""


def rolling_standardize(z: torch.Tensor, window: int) -> torch.Tensor:
    """``z [N, F]`` (rows in time order) standardised per column against its
    own last ``window`` rows, the current one included (fewer at the start):
    ``(z - mean) / max(sd, ROLLING_MIN_DEVIATION)``, population sd, float64.
    Causal: row t reads rows up to t only, as the stream does. A value is at
    most ``sqrt(window)`` from 0 (no outlier can make it overflow)."""
    z = z.double()
    padded = torch.cat([z.new_zeros(1, z.shape[1]), z])
    sums, squares = padded.cumsum(0), padded.square().cumsum(0)
    end = torch.arange(1, len(z) + 1, device=z.device)
    start = (end - window).clamp_min(0)
    count = (end - start).unsqueeze(1).double()
    mean = (sums[end] - sums[start]) / count
    variance = ((squares[end] - squares[start]) / count - mean.square()).clamp_min(0)
    return (z - mean) / variance.sqrt().clamp_min(ROLLING_MIN_DEVIATION)


def rolling_step(recent: torch.Tensor, pos: torch.Tensor, x: torch.Tensor,
                 active: torch.Tensor) -> torch.Tensor:
    """The streaming twin of :func:`rolling_standardize`: one tick ``x [B,
    F]`` of each of B series, series b at its tick ``pos[b]``, against
    ``recent [B, N, F]`` float64 (its last N inputs, tick p in slot p % N,
    zeros before the first N). The ``active`` series' ticks join ``recent``
    in place; the others' rows are computed and mean nothing. Static shapes,
    no host reads: it can be captured in a CUDA graph."""
    window = recent.shape[1]
    rows = torch.arange(len(x), device=x.device)
    slot = pos % window
    recent[rows, slot] = torch.where(active[:, None], x.double(), recent[rows, slot])
    count = (pos + 1).clamp(max=window).unsqueeze(1).double()
    mean = recent.sum(1) / count
    variance = (recent.square().sum(1) / count - mean.square()).clamp_min(0)
    return ((x.double() - mean) / variance.sqrt().clamp_min(ROLLING_MIN_DEVIATION)).to(x.dtype)


@dataclass
class ModelInputs:
    """A spec and its normalisation: ``x`` standardised per column with the
    train split's mean and deviation (then, with ``rolling`` N ticks, against
    each column's last N ticks: :func:`rolling_standardize`), ``dt`` divided
    by the train split's median positive gap (so ``log1p`` in the model sees
    O(1) values)."""

    spec: ma_features.FeatureSpec
    standardizer: ma_features.Standardizer
    dt_scale: float
    rolling: int | None = None

    @classmethod
    def fit(cls, spec: ma_features.FeatureSpec, x: torch.Tensor, dt: torch.Tensor,
            rolling: int | None = None) -> ModelInputs:
        """Statistics of the training rows ``x [N, F]``, ``dt [N]``."""
        _refuse(~torch.isfinite(x), x, spec.names, "is not finite")
        deviation = (x.double() - x.double().median(0).values).abs()
        k = max(1, int(SPIKE_QUANTILE * len(x)))
        typical = deviation.kthvalue(k, dim=0).values
        _refuse((deviation > INPUT_LIMIT * typical) & (typical > 0), x, spec.names,
                f"is a spike: beyond {INPUT_LIMIT:g} times the {SPIKE_QUANTILE:g} quantile of "
                "its column's deviations from the median, it would swamp the column's statistics")
        positive = dt[dt > 0]
        dt_scale = float(positive.median()) if len(positive) else 1.0
        return cls(spec, ma_features.Standardizer().fit(x), dt_scale, rolling)

    @classmethod
    def from_state(cls, spec: ma_features.FeatureSpec, state: dict) -> ModelInputs:
        """The inputs of a checkpoint: its spec and its ``normalization`` entry."""
        if not isinstance(state, dict) or {"standardizer", "dt_scale"} - set(state):
            raise ValueError("normalization state must hold 'standardizer' and 'dt_scale'")
        standardizer = ma_features.Standardizer()
        standardizer.load_state_dict(state["standardizer"])
        if standardizer.mean.shape != (len(spec.names),):
            raise ValueError(f"normalization has {standardizer.mean.numel()} columns; the spec "
                             f"has {len(spec.names)} {spec.names}")
        dt_scale = state["dt_scale"]
        if not (isinstance(dt_scale, (int, float)) and 0 < dt_scale < float("inf")):
            raise ValueError(f"normalization dt_scale must be a positive number, got {dt_scale!r}")
        rolling = state.get("rolling")  # absent in checkpoints from before the option
        if rolling is not None and (isinstance(rolling, bool) or not isinstance(rolling, int)
                                    or rolling < 1):
            raise ValueError(f"normalization rolling must be null or a number of ticks >= 1, "
                             f"got {rolling!r}")
        return cls(spec, standardizer, float(dt_scale), rolling)

    def state_dict(self) -> dict:
        """The fitted statistics and the rolling window (the spec travels in
        the run's config)."""
        return {"standardizer": self.standardizer.state_dict(), "dt_scale": self.dt_scale,
                "rolling": self.rolling}

    def normalize(self, x: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``x``, ``dt`` (one series, rows in time order) -> what the
        model reads, float32; a ValueError names the first row with an input
        not finite or beyond :data:`INPUT_LIMIT` deviations (the model would
        overflow on it)."""
        _refuse(~torch.isfinite(x), x, self.spec.names, "is not finite")
        z = self.standardizer.transform(x.double())
        _refuse(z.abs() > INPUT_LIMIT, x, self.spec.names,
                f"is beyond {INPUT_LIMIT:g} deviations of the training rows")
        scaled = dt.double() / self.dt_scale
        _refuse(~(scaled.abs() <= INPUT_LIMIT)[:, None], dt[:, None], (DT,),
                f"is not finite or beyond {INPUT_LIMIT:g} times the training rows' median gap")
        if self.rolling is not None:  # from float32, as the engine's inputs are
            z = rolling_standardize(z.float(), self.rolling)
        return z.float(), scaled.float()

    def mirror(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sign, offset)``, ``[F]`` float32 each: the normalised inputs of
        the mirrored book are ``x * sign + offset`` (:func:`mirror_parity`).
        An odd column's raw value changes sign, so its train-standardised one
        becomes ``-z - 2 mean / sd``; rolled against its own recent ticks
        (``rolling``), the shift cancels and it is ``-z`` exactly."""
        sign = mirror_parity(self.spec.names)
        shift, scale = self.standardizer.affine()
        offset = torch.zeros_like(sign) if self.rolling is not None else \
            torch.where(sign < 0, -2 * shift * scale, 0.0).float()
        return sign, offset

    def stream(self, batch: int = 1, device: torch.device | str = "cpu",
               max_events: int = 4096, levels: int | None = None) -> ma_features.FeatureState:
        """Float64 feature state of ``batch`` instruments over the spec and
        ``dt``: the streaming twin of :func:`raw_columns` (its columns are
        ``spec.including(DT).names``), keeping ``levels`` book levels
        (default the spec's)."""
        return ma_features.FeatureState(self.spec.including(DT), batch=batch, device=device,
                                        dtype=torch.float64, max_events=max_events,
                                        levels=levels)


def _refuse(bad: torch.Tensor, x: torch.Tensor, names: tuple[str, ...], why: str) -> None:
    """A ValueError naming the first bad row, its column and value: the model
    must not read it (policy: docs/reliability.md)."""
    rows = bad.any(1)
    if bool(rows.any()):
        row = int(rows.nonzero()[0])
        column = int(bad[row].nonzero()[0])
        raise ValueError(f"tick row {row}: input {names[column]!r} = {float(x[row, column]):g} "
                         f"{why} ({int(rows.sum())} such row(s)); clean or drop these ticks")

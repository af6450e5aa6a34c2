"""FeatureSpec: which microstructure features to compute, and over which windows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import ma_kernels

# Features of one event (and the one before it), in their column order.
INSTANT_FEATURES = ma_kernels.BOOK_INSTANT_FEATURES
# Features over a trailing window, each computed for every window of the spec.
ROLLING_FEATURES = ma_kernels.BOOK_ROLLING_FEATURES
_ROLLING_NAMES = {
    "ofi": "ofi_sum",
    "signed_volume": "signed_volume_sum",
    "vwap": "vwap",
    "realized_variance": "realized_variance",
}


@dataclass(frozen=True)
class FeatureSpec:
    """A selection of features; formulas and policies in docs/features.md.

    Attributes:
        instant: per-event features, a subset of :data:`INSTANT_FEATURES`.
        depth_imbalance: for each ``k``, the imbalance of the sizes summed over
            the best ``k`` levels (column ``depth_imbalance_{k}``).
        ofi_levels: ``L > 0`` adds the order flow imbalance of each of the best
            ``L`` levels (``ofi_level_{i}``) and their sum, the multi-level OFI
            (``mlofi_{L}``).
        rolling: window features, a subset of :data:`ROLLING_FEATURES`.
        windows: trailing windows in events (the current event included).
        time_windows: trailing windows in nanoseconds: events with
            ``time[t] - tau < time[j] <= time[t]``, ``j <= t``.

    Depth imbalances, windows and time windows hold distinct values, at most
    ``ma_kernels.BOOK_FEATURES_MAX_ENTRIES`` (8) entries each.

    Columns come in that order: instant, depth imbalances, level OFIs, then
    for each event window and then each time window the rolling features
    (suffix ``_{W}`` or ``_{tau}ns``).
    """

    instant: tuple[str, ...] = INSTANT_FEATURES
    depth_imbalance: tuple[int, ...] = ()
    ofi_levels: int = 0
    rolling: tuple[str, ...] = ROLLING_FEATURES
    windows: tuple[int, ...] = (100,)
    time_windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for field, allowed in (("instant", INSTANT_FEATURES), ("rolling", ROLLING_FEATURES)):
            chosen = getattr(self, field)
            if isinstance(chosen, str) or not isinstance(chosen, (tuple, list)):
                raise ValueError(f"FeatureSpec.{field} must be a tuple of names, got {chosen!r}")
            unknown = [name for name in chosen if name not in allowed]
            if unknown or len(set(chosen)) != len(chosen):
                raise ValueError(
                    f"FeatureSpec.{field}: {unknown or list(chosen)} not distinct names "
                    f"among {allowed}"
                )
            object.__setattr__(self, field, tuple(chosen))
        for field in ("depth_imbalance", "windows", "time_windows"):
            values = getattr(self, field)
            if not isinstance(values, (tuple, list)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
            ):
                raise ValueError(
                    f"FeatureSpec.{field} must be a tuple of ints >= 1, got {values!r}"
                )
            if len(set(values)) != len(values):
                raise ValueError(f"FeatureSpec.{field} has repeated values {values!r}: each "
                                 "names columns, so each must be distinct")
            if len(values) > ma_kernels.BOOK_FEATURES_MAX_ENTRIES:
                raise ValueError(
                    f"FeatureSpec.{field}: at most {ma_kernels.BOOK_FEATURES_MAX_ENTRIES} "
                    f"entries, got {len(values)}"
                )
            object.__setattr__(self, field, tuple(values))
        if not isinstance(self.ofi_levels, int) or isinstance(self.ofi_levels, bool) or (
            self.ofi_levels < 0
        ):
            raise ValueError(f"FeatureSpec.ofi_levels must be an int >= 0, got {self.ofi_levels!r}")

    @classmethod
    def model_inputs(cls) -> FeatureSpec:
        """What the model reads by default: level-1 features made stationary
        (no price level), one event at a time. The model takes the time since
        the previous event (``inter_arrival``) apart, as its ``dt``."""
        return cls(
            instant=("spread", "mid_change", "microprice_offset", "imbalance", "ofi", "log_depth"),
            rolling=(),
            windows=(),
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        """The spec a YAML mapping or a checkpoint describes; fields left out
        take their defaults, an unknown field is a ValueError naming it."""
        if isinstance(values, FeatureSpec):
            return values
        if not isinstance(values, dict):
            raise ValueError(f"a feature spec must be a mapping of fields, got {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown FeatureSpec fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and ints, for YAML and checkpoints (``from_dict`` reads it back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def including(self, *instant: str) -> FeatureSpec:
        """This spec with the instant features ``instant`` added after its own
        where missing: one pass of the op then also yields what a caller needs
        beside the spec's columns (a mid for labels, the dt of the model)."""
        missing = tuple(name for name in instant if name not in self.instant)
        return replace(self, instant=(*self.instant, *missing))

    @classmethod
    def anchors(cls) -> FeatureSpec:
        """The set of ANCHORS.md, computed by one fused ma_kernels pass:
        the level-1 features plus rolling OFI, VWAP and realized variance over 100 events."""
        return cls(
            instant=("spread", "mid", "microprice", "imbalance", "ofi"),
            rolling=("ofi", "vwap", "realized_variance"),
            windows=(100,),
        )

    @property
    def levels(self) -> int:
        """Book levels the spec reads (1 for level-1 features only)."""
        return max((1, self.ofi_levels, *self.depth_imbalance))

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in column order."""
        rolling = [
            f"{_ROLLING_NAMES[name]}_{suffix}"
            for suffix in (*map(str, self.windows), *(f"{tau}ns" for tau in self.time_windows))
            for name in self.rolling
        ]
        levels = [f"ofi_level_{i}" for i in range(1, self.ofi_levels + 1)]
        return (
            *self.instant,
            *(f"depth_imbalance_{k}" for k in self.depth_imbalance),
            *levels,
            *([f"mlofi_{self.ofi_levels}"] if self.ofi_levels else []),
            *rolling,
        )

"""Checks of :class:`~ma_features.Ticks` against the data model, with a policy for bad rows.

``on_error="raise"`` raises :class:`TickDataError` (a ``ValueError``) naming the first bad
row, its column and value; ``on_error="drop"`` removes every bad row, logs a warning and
returns a :class:`ValidationReport` with the count of rows per reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .ticks import EventType, Ticks

logger = logging.getLogger("ma_features")

OnError = Literal["raise", "drop"]

#: Reason code -> what is wrong. A row may fail several checks.
REASONS = {
    "malformed": "malformed row",
    "bad_event": "unknown event type",
    "time_not_monotonic": "time before an earlier row's time",
    "bad_size": "negative, NaN or infinite size",
    "bad_price": "NaN, infinite or non-positive price with a positive size",
    "empty_level_price": "price on an empty level (size 0; an empty level's price is NaN)",
    "unsorted_levels": "levels out of order (a price not worse than the level above, "
    "or a quote below an empty level)",
    "crossed_book": "crossed book (bid_price_1 >= ask_price_1)",
    "bad_trade": "inconsistent trade (side not -1/0/+1, or a price or side with trade_size 0)",
}

# Event codes are contiguous: a range test, not np.isin (which costs more than
# every other check together on the one-row batches of the streaming engine).
_FIRST_EVENT, _LAST_EVENT = min(EventType), max(EventType)
assert len(EventType) == _LAST_EVENT - _FIRST_EVENT + 1

#: ``where(row, column)`` -> location text; readers map rows to file lines and columns.
Where = Callable[[int, str], str]


class TickDataError(ValueError):
    """Bad tick data; the message names the source, row (or line) and column."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ValidationReport:
    """What validation (and parsing) removed from one source.

    ``dropped`` counts rows per reason; a row failing several checks counts under each, so
    the counts may add up to more than ``rows_in - rows_out``.
    """

    source: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in self.dropped.items()) or "none"
        return f"{self.source}: kept {self.rows_out} of {self.rows_in} rows (dropped {reasons})"


@dataclass(frozen=True)
class _Finding:
    reason: str
    rows: np.ndarray  # bool [N]
    first: int
    column: str
    value: object


def _findings(t: Ticks) -> list[_Finding]:
    found: list[_Finding] = []

    def check(reason: str, name: str, bad: np.ndarray, level_offset: int = 1) -> None:
        rows = bad if bad.ndim == 1 else bad.any(axis=1)
        if not rows.any():
            return
        i = int(np.argmax(rows))
        if bad.ndim == 1:
            column, value = name, getattr(t, name)[i].item()
        else:
            k = int(np.argmax(bad[i])) + level_offset - 1
            column, value = f"{name}_{k + 1}", getattr(t, name)[i, k].item()
        found.append(_Finding(reason, rows, i, column, value))

    check("bad_event", "event", (t.event < _FIRST_EVENT) | (t.event > _LAST_EVENT))
    earlier = np.maximum.accumulate(t.time)
    check("time_not_monotonic", "time", np.concatenate([[False], t.time[1:] < earlier[:-1]]))
    present = {}
    for side in ("bid", "ask"):
        price, size = getattr(t, f"{side}_price"), getattr(t, f"{side}_size")
        check("bad_size", f"{side}_size", ~np.isfinite(size) | (size < 0))
        check("bad_price", f"{side}_price", (size > 0) & ~(np.isfinite(price) & (price > 0)))
        check("empty_level_price", f"{side}_price", (size == 0) & ~np.isnan(price))
        present[side] = (size > 0) & np.isfinite(price)
        worse = price[:, 1:] < price[:, :-1] if side == "bid" else price[:, 1:] > price[:, :-1]
        below_gap = present[side][:, 1:] & (size[:, :-1] == 0)
        both = present[side][:, 1:] & present[side][:, :-1]
        check("unsorted_levels", f"{side}_price", below_gap | (both & ~worse), level_offset=2)
    if t.levels:
        crossed = present["bid"][:, 0] & present["ask"][:, 0]
        crossed &= t.bid_price[:, 0] >= t.ask_price[:, 0]
        check("crossed_book", "bid_price", crossed[:, None])
    size, price, side = t.trade_size, t.trade_price, t.trade_side
    check("bad_size", "trade_size", ~np.isfinite(size) | (size < 0))
    check("bad_price", "trade_price", (size > 0) & ~(np.isfinite(price) & (price > 0)))
    check("bad_trade", "trade_side", (side < -1) | (side > 1))
    check("bad_trade", "trade_price", (size == 0) & (price != 0))
    check("bad_trade", "trade_side", (size == 0) & (side != 0))
    return found


def bad_rows(ticks: Ticks) -> dict[str, np.ndarray]:
    """For each reason of :data:`REASONS` some row fails, the ``[N]`` bool mask
    of those rows (a row may fail several): the checks of :func:`validate`,
    for a caller with a policy of its own (the streaming engine rejects and
    counts)."""
    masks: dict[str, np.ndarray] = {}
    for f in _findings(ticks):
        masks[f.reason] = masks.get(f.reason, np.zeros(len(ticks), dtype=bool)) | f.rows
    return masks


def validate(
    ticks: Ticks, on_error: OnError = "raise", *, source: str = "Ticks"
) -> tuple[Ticks, ValidationReport]:
    """Check ``ticks``; return them (without the bad rows under ``"drop"``) and a report.

    The checks are those of :data:`REASONS`. Under ``"raise"`` the error names the first bad
    row (0-based), its column and value, and how many rows are bad in all.
    """
    return check(
        ticks, on_error, source=source, where=lambda r, c: f"{source} row {r}, column '{c}'"
    )


def check(
    ticks: Ticks,
    on_error: OnError,
    *,
    source: str,
    where: Where,
    malformed: int = 0,
) -> tuple[Ticks, ValidationReport]:
    """:func:`validate` for readers: ``where`` maps a row and column to a place in the input,
    ``malformed`` counts unparsable rows the reader already removed (reported, not checked)."""
    if on_error not in ("raise", "drop"):
        raise ValueError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    findings = _findings(ticks)
    bad = np.zeros(len(ticks), dtype=bool)
    per_reason: dict[str, np.ndarray] = {}
    for f in findings:
        bad |= f.rows
        per_reason[f.reason] = per_reason.get(f.reason, False) | f.rows
    if findings and on_error == "raise":
        f = min(findings, key=lambda f: f.first)
        raise TickDataError(
            f"{where(f.first, f.column)}: {REASONS[f.reason]}, value {f.value!r} "
            f"({int(bad.sum())} bad row(s) in all; on_error='drop' removes them)",
            f.reason,
        )
    dropped = {"malformed": malformed} if malformed else {}
    dropped.update({reason: int(rows.sum()) for reason, rows in per_reason.items()})
    rows_out = len(ticks) - int(bad.sum())
    report = ValidationReport(source, len(ticks) + malformed, rows_out, dropped)
    if report.rows_dropped:
        logger.warning("%s", report)
    return (ticks[~bad] if bad.any() else ticks), report

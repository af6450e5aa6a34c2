"""The tick data model: one row per book event, columnar, K price levels.

Every array has one entry per event (``N`` rows). Book arrays are ``[N, K]``
and hold the book *after* the event; level 0 is the best quote. An empty
level has size 0 and price NaN. A row with no trade has trade size 0, trade
price 0 and trade side 0, so size-weighted sums need no masking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np
import torch


class EventType(IntEnum):
    """Event codes, those of LOBSTER's message files."""

    SUBMIT = 1  # new limit order
    CANCEL = 2  # partial cancellation
    DELETE = 3  # full deletion of a limit order
    EXECUTE_VISIBLE = 4  # execution against a visible limit order
    EXECUTE_HIDDEN = 5  # execution against a hidden order
    CROSS = 6  # auction cross trade
    HALT = 7  # trading halt indicator


@dataclass(frozen=True)
class Ticks:
    """A columnar sequence of order-book events.

    Attributes:
        time: int64 nanoseconds (since midnight for LOBSTER, else any epoch), non-decreasing.
        event: int8 :class:`EventType` codes.
        bid_price, bid_size, ask_price, ask_size: float64 ``[N, K]``, book after the event.
        trade_price, trade_size: float64 ``[N]``, the trade this event is (0 when none).
        trade_side: int8 ``[N]``, aggressor side: +1 buyer-initiated, -1 seller-initiated, 0 none.
    """

    time: np.ndarray
    event: np.ndarray
    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    trade_price: np.ndarray
    trade_size: np.ndarray
    trade_side: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.time)
        for f in fields(self):
            array = getattr(self, f.name)
            if not isinstance(array, np.ndarray):
                raise ValueError(
                    f"Ticks.{f.name} must be a numpy array, got {type(array).__name__}"
                )
            if len(array) != n:
                raise ValueError(f"Ticks.{f.name} has {len(array)} rows, Ticks.time has {n}")
        shape = self.bid_price.shape
        if len(shape) != 2:
            raise ValueError(f"Ticks.bid_price must be [N, K], got shape {shape}")
        for name in ("bid_size", "ask_price", "ask_size"):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Ticks.{name} has shape {getattr(self, name).shape}, bid_price {shape}"
                )

    def __len__(self) -> int:
        return len(self.time)

    @property
    def levels(self) -> int:
        return self.bid_price.shape[1]

    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> Ticks:
        """Rows selected by a slice, an integer index array or a boolean mask."""
        if isinstance(index, (int, np.integer)):
            # A single row as Ticks would silently drop a dimension or not; be explicit.
            raise TypeError("index Ticks with a slice or an array; for one row use ticks[i:i + 1]")
        return Ticks(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[Ticks]) -> Ticks:
        """Rows of ``parts`` one after the other (time order is not checked: see ``validate``)."""
        if not parts:
            raise ValueError("Ticks.concat needs at least one Ticks")
        levels = sorted({p.levels for p in parts})
        if len(levels) > 1:
            raise ValueError(f"Ticks.concat: parts have different numbers of levels {levels}")
        return Ticks(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Ticks)}
        )

    def equals(self, other: Ticks) -> bool:
        """Same dtypes, shapes and values, NaN equal to NaN (``==`` is not defined on arrays)."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                return False
        return True

    def to_tensors(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict[str, torch.Tensor]:
        """Every field as a tensor on ``device``, keyed by field name.

        Float fields (prices, sizes) become ``dtype``; ``time`` stays int64 and ``event`` and
        ``trade_side`` int8. On the CPU with a matching dtype the tensor shares the array's memory.
        """
        out = {}
        for f in fields(self):
            array = np.ascontiguousarray(getattr(self, f.name))
            if not array.flags.writeable:  # torch.from_numpy needs a writable buffer
                array = array.copy()
            tensor = torch.from_numpy(array)
            if array.dtype.kind == "f":
                out[f.name] = tensor.to(device=device, dtype=dtype)
            else:
                out[f.name] = tensor.to(device=device)
        return out

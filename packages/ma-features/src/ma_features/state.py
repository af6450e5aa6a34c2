"""FeatureState: the features of a FeatureSpec computed one event at a time,
for one or many instruments, equal to :func:`compute_features` on the same
ticks.

All state lives in tensors on the state's device: the previous event and a
ring buffer of each instrument's last ``max(windows)`` rolling terms. An
update runs only tensor ops on that device and never reads a value back to
the host, so on a GPU ticks stream without a sync per tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

import torch

from .compute import events
from .rows import TERMS, Event, event_values, rolling_values
from .spec import FeatureSpec
from .ticks import Ticks

_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")


class FeatureState:
    """Streaming features of ``batch`` instruments that step together.

    Args:
        spec: the features (default ``FeatureSpec()``); time windows are not
            supported (a time window has no bound on the events it holds).
        batch: instruments per update.
        device, dtype: where the state lives and the dtype of the features;
            the state itself is float64.
    """

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        *,
        batch: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        spec = FeatureSpec() if spec is None else spec
        if spec.time_windows:
            raise ValueError(
                f"FeatureState supports event windows only, got time_windows={spec.time_windows}"
            )
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        self.spec, self.batch, self.dtype = spec, batch, dtype
        self.device = torch.device(device)
        capacity = max(spec.windows, default=1)
        self._ring = torch.zeros(batch, capacity, len(TERMS), dtype=torch.float64, device=device)
        self._slots = torch.arange(capacity, device=device)
        self._windows = torch.tensor(spec.windows, dtype=torch.long, device=device)
        self._before: Event | None = None
        self._count = 0  # events seen; a Python int, so no update reads the device

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    def reset(self) -> None:
        """Forget every event: the next one is treated as the first of a series."""
        self._ring.zero_()
        self._before, self._count = None, 0

    def update(self, event: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features ``[batch, F]`` of the next event of every instrument.

        ``event`` maps the :class:`~ma_features.Ticks` field names ``time``
        (int64 ns), ``bid_price``, ``bid_size``, ``ask_price``, ``ask_size``
        (``[batch, K]``, K at least the spec's levels), ``trade_price``,
        ``trade_size`` and ``trade_side`` (``[batch]``) to tensors. Values
        are not checked (that would read the device each tick): validate
        ticks upstream.
        """
        now = self._event(event)
        before = now if self._before is None else self._before
        has_before = torch.full((self.batch,), self._count > 0, device=self.device)
        columns, terms, mid = event_values(self.spec, now, before, has_before)

        capacity = self._ring.shape[1]
        slot = self._count % capacity
        self._ring[:, slot] = terms
        # Slots written within the last W events; unwritten slots hold zeros,
        # so early windows are the partial sums of the batch path.
        age = (slot - self._slots) % capacity
        in_window = (age < self._windows[:, None]).to(torch.float64)
        sums = torch.einsum("bst,ws->bwt", self._ring, in_window)
        for w in range(len(self.spec.windows)):
            columns += rolling_values(self.spec, sums[:, w], mid)

        if self._before is None:  # own copies: the caller may refill its buffers in place
            self._before = Event(**{f.name: getattr(now, f.name).clone() for f in fields(Event)})
        else:
            for f in fields(Event):
                getattr(self._before, f.name).copy_(getattr(now, f.name))
        self._count += 1
        if not columns:
            return mid.new_empty((self.batch, 0), dtype=self.dtype)
        return torch.stack(columns, dim=-1).to(self.dtype)

    def update_ticks(self, ticks: Ticks) -> torch.Tensor:
        """``[len(ticks), F]``: the events of one instrument (batch 1), one by one."""
        if self.batch != 1:
            raise ValueError(
                f"update_ticks feeds one instrument; this state has batch {self.batch}"
            )
        rows = events(ticks, self.device)
        out = [
            self.update({f.name: getattr(rows, f.name)[i : i + 1] for f in fields(Event)})
            for i in range(len(ticks))
        ]
        return torch.cat(out) if out else torch.empty((0, len(self.names)), dtype=self.dtype)

    def _event(self, event: Mapping[str, torch.Tensor]) -> Event:
        missing = [f.name for f in fields(Event) if f.name not in event]
        if missing:
            raise ValueError(f"event lacks {missing}")
        values = {}
        for f in fields(Event):
            x = event[f.name]
            book = f.name in _BOOK
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"event[{f.name!r}] must be a tensor, got {type(x).__name__}")
            if x.dim() != 1 + book or x.shape[0] != self.batch:
                want = "[batch, K]" if book else "[batch]"
                raise ValueError(
                    f"event[{f.name!r}] must be {want} with batch {self.batch}, "
                    f"got {tuple(x.shape)}"
                )
            if book and x.shape[1] < self.spec.levels:
                raise ValueError(
                    f"event[{f.name!r}] has {x.shape[1]} levels; the spec reads {self.spec.levels}"
                )
            if f.name == "time":
                values[f.name] = x.to(device=self.device, dtype=torch.int64)
            else:
                values[f.name] = x.to(device=self.device, dtype=torch.float64)
        return Event(**values)

"""FeatureState: the features of a FeatureSpec computed one event at a time,
for one or many instruments, equal to :func:`compute_features` on each
instrument's ticks. An update takes an event for any subset of the
instruments; each instrument has its own clock.

All state lives in tensors on the state's device: each instrument's previous
event, its count of events, and a ring buffer of its last rolling terms and
event times (as many as the longest event window, or ``max_events`` for time
windows). An update runs only tensor ops on that device and never reads a
value back to the host, so on a GPU ticks stream without a sync per tick (and
an update captures in a CUDA graph).

A time window has no bound on the events it holds, so a state holds at most
``max_events`` per time window. Overflow is detected exactly (the event
``max_events`` back is still inside the window) and never yields a truncated
sum: on the CPU the update raises; on other devices, where raising would need
a sync per tick, the window's columns are NaN where it overflowed and
:meth:`FeatureState.check` (called by ``update_ticks``) raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields

import torch

from .rows import TERMS, Event, event_values, rolling_values
from .spec import FeatureSpec
from .ticks import Ticks

_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")


class FeatureState:
    """Streaming features of ``batch`` instruments.

    Args:
        spec: the features (default ``FeatureSpec()``).
        batch: instruments per update.
        max_events: the most events a time window may hold (the current one
            included); a tick whose window holds more is an overflow (see the
            module docstring). The ring costs 56 bytes per instrument and slot.
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
        max_events: int = 4096,
    ) -> None:
        spec = FeatureSpec() if spec is None else spec
        for name, value in (("batch", batch), ("max_events", max_events)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.spec, self.batch, self.dtype, self.max_events = spec, batch, dtype, max_events
        self.device = torch.device(device)
        capacity = max((*spec.windows, max_events if spec.time_windows else 1))
        self._ring = torch.zeros(batch, capacity, len(TERMS), dtype=torch.float64, device=device)
        self._times = torch.zeros(batch, capacity, dtype=torch.int64, device=device)
        self._slots = torch.arange(capacity, device=device)
        self._windows = torch.tensor(spec.windows, dtype=torch.long, device=device)
        self._taus = torch.tensor(spec.time_windows, dtype=torch.int64, device=device)
        # Sticky per (instrument, time window): some tick overflowed (read by check()).
        self._overflow = torch.zeros(
            batch, len(spec.time_windows), dtype=torch.bool, device=device
        )
        self.levels = max(spec.levels, 1)  # the book levels the state keeps of each event
        book = torch.zeros(batch, self.levels, dtype=torch.float64, device=device)
        flat = torch.zeros(batch, dtype=torch.float64, device=device)
        self._before = Event(  # each instrument's previous event
            time=torch.zeros(batch, dtype=torch.int64, device=device),
            bid_price=book, bid_size=book.clone(), ask_price=book.clone(), ask_size=book.clone(),
            trade_price=flat, trade_size=flat.clone(), trade_side=flat.clone(),
        )
        self._count = torch.zeros(batch, dtype=torch.int64, device=device)  # events per instrument

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    def reset(self) -> None:
        """Forget every event: the next one is treated as the first of a series."""
        self._ring.zero_()
        self._times.zero_()
        self._overflow.zero_()
        self._count.zero_()

    def check(self) -> None:
        """Raise ValueError if a time window overflowed ``max_events`` since the
        last reset (its columns are NaN there). Reads the device: one sync."""
        if not self.spec.time_windows:
            return
        over = self._overflow.cpu()
        if over.any():
            self._raise_overflow(over, "held")

    def _raise_overflow(self, over: torch.Tensor, verb: str) -> None:
        w = int(over.any(0).nonzero()[0, 0])
        instruments = over[:, w].nonzero()[:, 0].tolist()
        raise ValueError(
            f"time window {self.spec.time_windows[w]}ns {verb} more than "
            f"max_events={self.max_events} events (instruments {instruments[:10]}): "
            "raise max_events"
        )

    def update(self, event: Mapping[str, torch.Tensor], active: torch.Tensor | None = None,
               accept: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Features ``[batch, F]`` of the next event of each ``active``
        instrument (``[batch]`` bool, default all); the others keep their
        state, and their rows of the result mean nothing. ``accept(features)
        -> [batch] bool`` (tensor ops only) may refuse events after their
        features are known: a refused event leaves its instrument's state as
        if it never came.

        ``event`` maps the :class:`~ma_features.Ticks` field names ``time``
        (int64 ns), ``bid_price``, ``bid_size``, ``ask_price``, ``ask_size``
        (``[batch, K]``, K at least the spec's levels), ``trade_price``,
        ``trade_size`` and ``trade_side`` (``[batch]``) to tensors. Values
        are not checked (that would read the device each tick): validate
        ticks upstream.
        """
        now = self._event(event)
        if active is None:
            active = torch.ones(self.batch, dtype=torch.bool, device=self.device)
        active = active.to(self.device)
        has_before = self._count > 0
        before = Event(**{f.name: _where(has_before, getattr(self._before, f.name),
                                         getattr(now, f.name)) for f in fields(Event)})
        columns, terms, mid = event_values(self.spec, now, before, has_before)

        values = self._columns(now, columns, terms, mid, active)
        if accept is not None:
            active = active & accept(values)
        self._commit(now, terms, active)
        return values

    def _columns(self, now: Event, columns: list[torch.Tensor], terms: torch.Tensor,
                 mid: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The event's columns, its rolling ones read from the ring as if the
        event were in it (the ring itself is written by _commit)."""
        capacity = self._ring.shape[1]
        slot = self._count % capacity  # [batch]: each instrument's own clock
        # Events at or before the horizon are outside the time window (as in the batch path).
        horizon = now.time[:, None] - self._taus  # [batch, time windows]
        if self.spec.time_windows:
            # Times are non-decreasing: the window holds more than max_events
            # events iff the event max_events back (read before its slot may
            # be overwritten) is still inside it.
            oldest = self._times.gather(1, ((self._count - self.max_events) % capacity)[:, None])
            over = (active & (self._count >= self.max_events))[:, None] & (oldest > horizon)
            if self.device.type == "cpu" and over.any():  # free on the CPU: raise at once
                self._raise_overflow(over, "would hold")
            self._overflow |= over
        # Sums as if the event were in its slot: the slot's old entry (out of
        # every window) left out, the event's terms added. Slots written within
        # the last W events; unwritten slots hold zeros, so early windows are
        # the partial sums of the batch path.
        age = (slot[:, None] - self._slots) % capacity  # [batch, capacity]
        older = age > 0
        in_window = ((age[:, None, :] < self._windows[:, None]) & older[:, None]).double()
        sums = torch.einsum("bst,bws->bwt", self._ring, in_window) + terms[:, None]
        for w in range(len(self.spec.windows)):
            columns += rolling_values(self.spec, sums[:, w], mid)
        if self.spec.time_windows:
            # Without overflow every event of the window is in the ring; unwritten
            # slots may pass the time test but hold zero terms.
            in_time = ((self._times[:, None, :] > horizon[:, :, None]) & older[:, None]).double()
            time_sums = torch.einsum("bst,bws->bwt", self._ring, in_time) + terms[:, None]
            for w in range(len(self.spec.time_windows)):
                values = rolling_values(self.spec, time_sums[:, w], mid)
                values = [torch.where(over[:, w], torch.nan, v) for v in values]
                columns += values
        if not columns:
            return mid.new_empty((self.batch, 0), dtype=self.dtype)
        return torch.stack(columns, dim=-1).to(self.dtype)

    def _commit(self, now: Event, terms: torch.Tensor, active: torch.Tensor) -> None:
        """The event of each active instrument becomes part of its state."""
        slot = self._count % self._ring.shape[1]
        _write(self._ring, slot, terms, active)
        _write(self._times, slot, now.time, active)
        for f in fields(Event):
            getattr(self._before, f.name).copy_(
                _where(active, getattr(now, f.name), getattr(self._before, f.name)))
        self._count += active

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the state (on its device): ``load_state_dict`` puts
        them back in place, so a CUDA graph captured over this state replays on
        the restored values."""
        state = {f"before.{f.name}": getattr(self._before, f.name) for f in fields(Event)}
        state.update(ring=self._ring, times=self._times, overflow=self._overflow,
                     count=self._count)
        return {name: t.clone() for name, t in state.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.state_dict()
        if set(state) != set(own):
            raise ValueError(f"FeatureState state has keys {sorted(state)}, expected "
                             f"{sorted(own)}")
        for name, t in state.items():
            if t.shape != own[name].shape or t.dtype != own[name].dtype:
                raise ValueError(f"FeatureState state[{name!r}] is {t.dtype} "
                                 f"{tuple(t.shape)}, expected {own[name].dtype} "
                                 f"{tuple(own[name].shape)} (another spec, batch or max_events?)")
        targets = {f"before.{f.name}": getattr(self._before, f.name) for f in fields(Event)}
        targets.update(ring=self._ring, times=self._times, overflow=self._overflow,
                       count=self._count)
        for name, t in state.items():
            targets[name].copy_(t)

    def update_ticks(self, ticks: Ticks) -> torch.Tensor:
        """``[len(ticks), F]``: the events of one instrument (batch 1), one by one."""
        if self.batch != 1:
            raise ValueError(
                f"update_ticks feeds one instrument; this state has batch {self.batch}"
            )
        rows = _events(ticks, self.device)
        out = [
            self.update({f.name: getattr(rows, f.name)[i : i + 1] for f in fields(Event)})
            for i in range(len(ticks))
        ]
        self.check()
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
            if book and x.shape[1] < self.levels:
                raise ValueError(
                    f"event[{f.name!r}] has {x.shape[1]} levels; the spec reads {self.levels}"
                )
            if book:
                x = x[:, : self.levels]
            if f.name == "time":
                values[f.name] = x.to(device=self.device, dtype=torch.int64)
            else:
                values[f.name] = x.to(device=self.device, dtype=torch.float64)
        return Event(**values)


def _where(condition: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x`` where ``condition [batch]`` holds, else ``y``, for any trailing shape."""
    return torch.where(condition.view(-1, *[1] * (x.dim() - 1)), x, y)


def _write(ring: torch.Tensor, slot: torch.Tensor, value: torch.Tensor,
           active: torch.Tensor) -> None:
    """``ring[b, slot[b]] = value[b]`` where ``active[b]``, in place, as one scatter."""
    index = slot.view(-1, 1, *[1] * (ring.dim() - 2)).expand(-1, 1, *ring.shape[2:])
    ring.scatter_(1, index, _where(active, value.unsqueeze(1), ring.gather(1, index)))


def _events(ticks: Ticks, device) -> Event:
    """All rows of ``ticks`` as one float64 :class:`Event` on ``device`` (time stays int64)."""
    tensors = ticks.to_tensors(device=device, dtype=torch.float64)
    tensors["trade_side"] = tensors["trade_side"].to(torch.float64)
    return Event(**{f.name: tensors[f.name] for f in fields(Event)})

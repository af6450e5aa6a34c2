"""FeatureState: the features of a FeatureSpec computed one event at a time,
for one or many instruments, equal to :func:`compute_features` on each
instrument's ticks. An update takes an event for any subset of the
instruments; each instrument has its own clock.

The arithmetic is ma_kernels' (``book_features_step`` and
``book_features_commit``: the batch op's formulas, one event at a time). All
state lives in tensors on the state's device: each instrument's previous
event, its count of events, and a ring buffer of its last rolling terms and
event times (as many as the longest event window, or ``max_events`` for time
windows). An update runs only ops on that device and never reads a value
back to the host, so on a GPU ticks stream without a sync per tick (and an
update captures in a CUDA graph).

A time window has no bound on the events it holds, so a state holds at most
``max_events`` per time window. Overflow is detected exactly (the event
``max_events`` back is still inside the window) and never yields a truncated
sum: on the CPU the update raises; on other devices, where raising would need
a sync per tick, the window's columns are NaN where it overflowed and
:meth:`FeatureState.check` (called by ``update_ticks``) raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

import ma_kernels

from .spec import FeatureSpec
from .ticks import Ticks

_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")
_TRADE = ("trade_price", "trade_size", "trade_side")


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
        levels: book levels kept of each event (default the spec's); more
            extend ``reasons``' checks to them.
    """

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        *,
        batch: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_events: int = 4096,
        levels: int | None = None,
    ) -> None:
        spec = FeatureSpec() if spec is None else spec
        for name, value in (("batch", batch), ("max_events", max_events)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.spec, self.batch, self.dtype, self.max_events = spec, batch, dtype, max_events
        self.device = torch.device(device)
        # The book levels the state keeps of each event (and events' checks read).
        self.levels = max(spec.levels, 1) if levels is None else levels
        if not isinstance(self.levels, int) or self.levels < max(spec.levels, 1):
            raise ValueError(f"levels must be an int >= the spec's {max(spec.levels, 1)}, got "
                             f"{levels!r}")
        # Without rolling columns no window is summed, so none needs a ring.
        windows, time_windows = (spec.windows, spec.time_windows) if spec.rolling else ((), ())
        capacity = max((*windows, max_events if time_windows else 1))
        self._state = ma_kernels.book_stream.stream_state(batch, self.levels, capacity,
                                                          self.device)
        # Sticky per (instrument, time window): some tick overflowed (read by check()).
        self._overflow = torch.zeros(batch, len(time_windows), dtype=torch.bool, device=device)
        self._spec = {"instant": spec.instant, "depth_imbalance": spec.depth_imbalance,
                      "ofi_levels": spec.ofi_levels, "rolling": spec.rolling,
                      "windows": windows, "time_windows": time_windows,
                      "max_events": max_events}

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.names

    @property
    def kernel_state(self) -> list[torch.Tensor]:
        """The state's tensors as ma_kernels' stream kernels take them
        (``ma_kernels.book_stream.STATE``), for kernels that update it in place."""
        return self._state

    @property
    def kernel_spec(self) -> dict:
        """The spec as keywords of ``ma_kernels.book_features_step``."""
        return dict(self._spec)

    def reset(self) -> None:
        """Forget every event: the next one is treated as the first of a series."""
        for t in (*self._state, self._overflow):
            t.zero_()

    def check(self) -> None:
        """Raise ValueError if a time window overflowed ``max_events`` since the
        last reset (its columns are NaN there). Reads the device: one sync."""
        if not self._overflow.shape[1]:
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
        book = [now[name] for name in _BOOK]
        columns, terms, over = ma_kernels.book_features_step(
            now["time"], *book, *(now[name] for name in _TRADE), active, self._state,
            **self._spec)
        if over.shape[1]:
            if self.device.type == "cpu" and over.any():  # free on the CPU: raise at once
                self._raise_overflow(over, "would hold")
            self._overflow |= over
        values = columns.to(self.dtype)
        if accept is not None:
            active = active & accept(values)
        ma_kernels.book_features_commit(now["time"], *book, active, terms, self._state)
        return values

    def reasons(self, event: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[batch]`` int8: why each instrument's next ``event`` may not enter
        its stream, as ``1 +`` an index of ``ma_kernels.book_stream.TICK_REASONS``
        (0: it may): the checks of :func:`~ma_features.bad_rows` on the levels
        the state keeps, no best bid or ask, or time before the instrument's
        last event. On the state's device, without a sync. ``event`` is as for
        :meth:`update`, plus ``event`` (``[batch]`` :class:`EventType` codes)."""
        now = self._event(event)
        if "event" not in event:
            raise ValueError("event lacks ['event'] (the event type codes)")
        codes = event["event"].to(device=self.device, dtype=torch.int64)
        return ma_kernels.book_tick_reasons(codes, now["time"], *(now[n] for n in _BOOK),
                                            *(now[n] for n in _TRADE), self._state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the state (on its device): ``load_state_dict`` puts
        them back in place, so a CUDA graph captured over this state replays on
        the restored values."""
        return {name: t.clone() for name, t in self._targets().items()}

    def _targets(self) -> dict[str, torch.Tensor]:
        return {**dict(zip(ma_kernels.book_stream.STATE, self._state, strict=True)),
                "overflow": self._overflow}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self._targets()
        if set(state) != set(own):
            raise ValueError(f"FeatureState state has keys {sorted(state)}, expected "
                             f"{sorted(own)}")
        for name, t in state.items():
            if t.shape != own[name].shape or t.dtype != own[name].dtype:
                raise ValueError(f"FeatureState state[{name!r}] is {t.dtype} "
                                 f"{tuple(t.shape)}, expected {own[name].dtype} "
                                 f"{tuple(own[name].shape)} (another spec, batch or max_events?)")
        for name, t in state.items():
            own[name].copy_(t)

    def update_ticks(self, ticks: Ticks) -> torch.Tensor:
        """``[len(ticks), F]``: the events of one instrument (batch 1), one by one."""
        if self.batch != 1:
            raise ValueError(
                f"update_ticks feeds one instrument; this state has batch {self.batch}"
            )
        rows = ticks.to_tensors(device=self.device, dtype=torch.float64)
        out = [self.update({name: rows[name][i : i + 1] for name in ("time", *_BOOK, *_TRADE)})
               for i in range(len(ticks))]
        self.check()
        return torch.cat(out) if out else torch.empty((0, len(self.names)), dtype=self.dtype)

    def _event(self, event: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [name for name in ("time", *_BOOK, *_TRADE) if name not in event]
        if missing:
            raise ValueError(f"event lacks {missing}")
        values = {}
        for name in ("time", *_BOOK, *_TRADE):
            x = event[name]
            book = name in _BOOK
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"event[{name!r}] must be a tensor, got {type(x).__name__}")
            if x.dim() != 1 + book or x.shape[0] != self.batch:
                want = "[batch, K]" if book else "[batch]"
                raise ValueError(
                    f"event[{name!r}] must be {want} with batch {self.batch}, "
                    f"got {tuple(x.shape)}"
                )
            if book and x.shape[1] < self.levels:
                raise ValueError(
                    f"event[{name!r}] has {x.shape[1]} levels; the spec reads {self.levels}"
                )
            dtype = torch.int64 if name == "time" else torch.float64
            values[name] = x.to(device=self.device, dtype=dtype)
        return values

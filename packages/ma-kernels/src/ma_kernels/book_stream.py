"""book_features one event at a time, for streams of many instruments.

The next event of each of B instruments against the state a stream keeps of
each: its last event (book levels and time), its count of events, and a ring
of its last rolling terms and event times. Two ops, so that a caller may
refuse events once their features are known (``ma_features.FeatureState``
does): ``book_features_step`` computes the columns of :func:`book_features`
(same spec, same formulas: csrc/book_stream.h) and each event's rolling
terms, reading the state only; ``book_features_commit`` writes the accepted
events into it. Both are tensor ops without a host sync, so a stream step
captures in a CUDA graph. Here: the functions, checks and kernel calls; the
ops are declared in ops.py. ``book_tick_reasons`` checks the events on the
device, so a stream refuses bad ticks without reading them on the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _C
from ._checks import check_exact, launch_args, plain_eager
from .book import _BOOK, _column_count, _spec

TERMS = 6  # rolling terms of an event: OFI, signed volume, notional, volume, trades, r^2
STATE = ("book", "time", "count", "ring", "times")
#: Why book_tick_reasons refuses an event (code i + 1), in order of precedence.
TICK_REASONS = ("bad_event", "bad_size", "bad_price", "empty_level_price", "unsorted_levels",
                "crossed_book", "bad_trade", "empty_side", "time_backwards")


def stream_state(batch: int, levels: int, capacity: int,
                 device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """A fresh state of ``batch`` instruments keeping ``levels`` book levels and
    ``capacity`` ring slots (the longest event window, or the most events a
    time window may hold): the tensors of :data:`STATE`, zeros."""
    return [torch.zeros(batch, 4, levels, dtype=torch.float64, device=device),
            torch.zeros(batch, dtype=torch.int64, device=device),
            torch.zeros(batch, dtype=torch.int64, device=device),
            torch.zeros(batch, capacity, TERMS, dtype=torch.float64, device=device),
            torch.zeros(batch, capacity, dtype=torch.int64, device=device)]


def book_features_step(
    time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, trade_price: torch.Tensor,
    trade_size: torch.Tensor, trade_side: torch.Tensor, active: torch.Tensor,
    state: Sequence[torch.Tensor], *, instant: Sequence[str], depth_imbalance: Sequence[int] = (),
    ofi_levels: int = 0, rolling: Sequence[str] = (), windows: Sequence[int] = (),
    time_windows: Sequence[int] = (), max_events: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The columns of the next event of each instrument.

    Args:
        time: ``[B]`` int64 ns, not before the instrument's last event.
        bid_price, bid_size, ask_price, ask_size: ``[B, K]`` float64, K at
            least the state's levels (any strides); trade_price, trade_size,
            trade_side: ``[B]`` float64 (side -1, 0 or +1).
        active: ``[B]`` bool: the instruments whose event this is (the
            others' rows mean nothing; a time window's overflow is flagged
            only where active).
        state: the tensors of :func:`stream_state` (read only).
        instant .. time_windows: the spec, as for :func:`book_features`.
        max_events: the most events a time window may hold (the ring holds
            that many; it must have at least that many slots).

    Returns:
        ``(columns [B, F] float64, terms [B, TERMS] float64, overflow [B,
        len(time_windows)] bool)``: a time window that would hold more than
        ``max_events`` events has NaN columns where ``overflow`` (no column
        of overflow without rolling columns: no window is summed then).
    """
    spec = _spec(state[0].shape[2] if _is_state(state) else 0, instant, depth_imbalance,
                 ofi_levels, rolling, windows, time_windows)
    _check(time, bid_price, bid_size, ask_price, ask_size, active, state,
           trade=(trade_price, trade_size, trade_side))
    capacity = state[3].shape[1]
    if time_windows and capacity < max_events or max(windows, default=1) > capacity:
        raise ValueError(f"the state's ring has {capacity} slots; the spec needs "
                         f"{max((*windows, max_events if time_windows else 1))}")
    args = (time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size,
            trade_side, active, list(state), *spec, max_events)
    if plain_eager(*args[:9], *state):
        return _STEP[time.device.type](*args)
    return torch.ops.ma_kernels.book_features_step(*args)


def book_tick_reasons(
    event: torch.Tensor, time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, trade_price: torch.Tensor,
    trade_size: torch.Tensor, trade_side: torch.Tensor, state: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``[B]`` int8: 0 where the event of each instrument may enter its stream,
    else ``1 +`` the index in :data:`TICK_REASONS` of the first reason it may
    not: the checks of ``ma_features.bad_rows`` on the state's levels (deeper
    ones are not read), no best bid or ask, or a time before the
    instrument's last event. ``event``: ``[B]`` int64 event codes; the rest
    as for :func:`book_features_step`."""
    active = torch.ones(len(time), dtype=torch.bool, device=time.device)
    _check(time, bid_price, bid_size, ask_price, ask_size, active, state,
           trade=(trade_price, trade_size, trade_side))
    check_exact("event", event, (len(time),), torch.int64, time.device)
    args = (event, time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size,
            trade_side, list(state))
    if plain_eager(*args[:9], *state):
        return _REASONS[time.device.type](*args)
    return torch.ops.ma_kernels.book_tick_reasons(*args)


def book_features_commit(
    time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, active: torch.Tensor, terms: torch.Tensor,
    state: Sequence[torch.Tensor],
) -> None:
    """Each ``active`` instrument's event (with its ``terms`` from
    :func:`book_features_step`) becomes part of its ``state``, in place."""
    _check(time, bid_price, bid_size, ask_price, ask_size, active, state)
    check_exact("terms", terms, (len(time), TERMS), torch.float64, time.device)
    args = (time, bid_price, bid_size, ask_price, ask_size, active, terms, list(state))
    if plain_eager(*args[:7], *state):
        return _COMMIT[time.device.type](*args)
    return torch.ops.ma_kernels.book_features_commit(*args)


def _is_state(state) -> bool:
    return (isinstance(state, (list, tuple)) and len(state) == len(STATE)
            and all(isinstance(t, torch.Tensor) for t in state) and state[0].dim() == 3)


def _check(time, bid_price, bid_size, ask_price, ask_size, active, state, trade=()) -> None:
    if not isinstance(time, torch.Tensor) or time.dim() != 1:
        raise ValueError("time must be a [B] int64 tensor")
    batch, device = len(time), time.device
    if not _is_state(state):
        raise ValueError(f"state must be the {len(STATE)} tensors {STATE} of stream_state")
    levels = state[0].shape[2]
    check_exact("time", time, (batch,), torch.int64, device)
    for name, t in zip(_BOOK, (bid_price, bid_size, ask_price, ask_size), strict=True):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] != batch \
                or t.shape[1] < levels:
            raise ValueError(f"{name} must be [{batch}, K] with K >= {levels} levels, got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
        check_exact(name, t, tuple(t.shape), torch.float64, device)
    for name, t in zip(("trade_price", "trade_size", "trade_side"), trade, strict=False):
        check_exact(name, t, (batch,), torch.float64, device)
    check_exact("active", active, (batch,), torch.bool, device)
    _check_state(state, device)


def _check_state(state: Sequence[torch.Tensor], device: torch.device) -> None:
    """Each tensor of a stream_state, by its shape, dtype and device."""
    batch, levels, capacity = state[0].shape[0], state[0].shape[2], state[3].shape[1]
    shapes = ((batch, 4, levels), (batch,), (batch,), (batch, capacity, TERMS), (batch, capacity))
    dtypes = (torch.float64, torch.int64, torch.int64, torch.float64, torch.int64)
    for name, t, shape, dtype in zip(STATE, state, shapes, dtypes, strict=True):
        check_exact(f"state[{name}]", t, shape, dtype, device, contiguous=True)


def _events(time, bid_price, bid_size, ask_price, ask_size, trade, active) -> tuple:
    """The events as the kernels take them: batch, levels, strided book and columns."""
    book = [(t.data_ptr(), t.stride(0), t.stride(1)) for t in
            (bid_price, bid_size, ask_price, ask_size)]
    columns = [(t.data_ptr(), t.stride(0), 0) for t in (*trade, time)]
    return len(time), book, columns, active.data_ptr()


def _state(state: Sequence[torch.Tensor], max_events: int) -> tuple[int, ...]:
    return (*(t.data_ptr() for t in state), state[3].shape[1], max_events)


def _outputs(time: torch.Tensor, state, spec) -> tuple[torch.Tensor, ...]:
    """Every buffer the kernels write comes from here (tests fill it with NaN)."""
    rolling, time_windows, batch = spec[3], spec[5], len(time)
    # Without rolling columns no window is summed (as in book_features): none overflows.
    return (torch.empty(batch, _column_count(spec), dtype=torch.float64, device=time.device),
            torch.empty(batch, TERMS, dtype=torch.float64, device=time.device),
            torch.empty(batch, len(time_windows) if rolling else 0, dtype=torch.bool,
                        device=time.device))


# The kernels' calls: ``device`` -1 is the CPU, else a CUDA device and ``stream``.
def _step(device, stream, time, bid_price, bid_size, ask_price, ask_size, trade_price,
          trade_size, trade_side, active, state, instant, depth, ofi_levels, rolling, windows,
          time_windows, max_events):
    out = _outputs(time, state, (instant, depth, ofi_levels, rolling, windows, time_windows))
    batch, book, columns, active_ptr = _events(time, bid_price, bid_size, ask_price, ask_size,
                                               (trade_price, trade_size, trade_side), active)
    if batch:
        _C.book_stream_columns(batch, state[0].shape[2], book, columns, active_ptr,
                               _state(state, max_events), instant, depth, ofi_levels, rolling,
                               windows, time_windows, *(t.data_ptr() for t in out), device,
                               stream)
    return out


def step_cpu(
    time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, trade_price: torch.Tensor,
    trade_size: torch.Tensor, trade_side: torch.Tensor, active: torch.Tensor,
    state: list[torch.Tensor], instant: list[int], depth_imbalance: list[int], ofi_levels: int,
    rolling: list[int], windows: list[int], time_windows: list[int], max_events: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _step(-1, 0, time, bid_price, bid_size, ask_price, ask_size,
                 trade_price, trade_size, trade_side, active, state, instant, depth_imbalance,
                 ofi_levels, rolling, windows, time_windows, max_events)


def step_cuda(*args):
    return _step(*launch_args(args[0]), *args)


def step_fake(time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size, trade_side,
              active, state, *spec_and_max):
    return _outputs(time, state, spec_and_max[:-1])


def _reasons(device, stream, event, time, bid_price, bid_size, ask_price, ask_size,
             trade_price, trade_size, trade_side, state) -> torch.Tensor:
    reasons = torch.empty(len(time), dtype=torch.int8, device=time.device)
    batch, book, columns, _ = _events(time, bid_price, bid_size, ask_price, ask_size,
                                      (trade_price, trade_size, trade_side), time)
    if batch:
        _C.book_tick_reasons(batch, state[0].shape[2], book, columns, _state(state, 0),
                             (event.data_ptr(), event.stride(0), 0), reasons.data_ptr(), device,
                             stream)
    return reasons


def reasons_cpu(
    event: torch.Tensor, time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, trade_price: torch.Tensor,
    trade_size: torch.Tensor, trade_side: torch.Tensor, state: list[torch.Tensor],
) -> torch.Tensor:
    return _reasons(-1, 0, event, time, bid_price, bid_size, ask_price,
                    ask_size, trade_price, trade_size, trade_side, state)


def reasons_cuda(*args) -> torch.Tensor:
    return _reasons(*launch_args(args[0]), *args)


def reasons_fake(event, *args) -> torch.Tensor:
    return torch.empty(len(event), dtype=torch.int8, device=event.device)


def _commit(device, stream, time, bid_price, bid_size, ask_price, ask_size, active, terms,
            state):
    # The commit reads no trade column: null pointers stand in for them.
    batch, book, columns, active_ptr = _events(time, bid_price, bid_size, ask_price, ask_size,
                                               (), active)
    if batch:
        _C.book_stream_commit(batch, state[0].shape[2], book, [(0, 0, 0)] * 3 + columns,
                              active_ptr, _state(state, 0), terms.data_ptr(), device, stream)


def commit_cpu(
    time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, active: torch.Tensor, terms: torch.Tensor,
    state: list[torch.Tensor],
) -> None:
    _commit(-1, 0, time, bid_price, bid_size, ask_price, ask_size, active,
            terms, state)


def commit_cuda(*args) -> None:
    _commit(*launch_args(args[0]), *args)


_STEP = {"cpu": step_cpu, "cuda": step_cuda}
_COMMIT = {"cpu": commit_cpu, "cuda": commit_cuda}
_REASONS = {"cpu": reasons_cpu, "cuda": reasons_cuda}

"""stream_inputs: a round of raw ticks to the model's inputs, in one kernel.

One tick per instrument (any subset active): the tick's checks
(:func:`book_tick_reasons`), its features (:func:`book_features_step`),
their standardisation ``(column - shift) * scale`` with the training
statistics, the refusal of inputs the model would overflow on, and the
commit of each accepted tick into its instrument's feature state
(:func:`book_features_commit`), as one op: what the streaming engine's
captured step runs before ``transformer_step``, and what the resident
kernel runs in place (csrc/stream_inputs.h). Here: the function, its checks
and the kernels' calls; the op is declared in ops.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _C
from ._checks import check_exact, launch_args, plain_eager
from .book import _column_count, _spec
from .book_stream import STATE, _check_state, _is_state, _state

MAX_COLUMNS = 128  # csrc/stream_inputs.h


def stream_inputs(
    in_f64: torch.Tensor, in_i64: torch.Tensor, state: Sequence[torch.Tensor], *,
    instant: Sequence[str], depth_imbalance: Sequence[int] = (), ofi_levels: int = 0,
    rolling: Sequence[str] = (), windows: Sequence[int] = (), time_windows: Sequence[int] = (),
    max_events: int = 4096, x_index: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
    dt_column: int, dt_scale: float, limit: float, overflow_code: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's inputs for one round of ticks.

    Args:
        in_f64: ``[B, 4 L + 3]`` float64 per instrument: bid, bid size, ask,
            ask size (L levels each, L the state's), trade price, size, side.
        in_i64: ``[B, 3]`` int64: time, active flag, event type.
        state: the feature state (:func:`book_stream.stream_state`); the
            accepted ticks are committed into it.
        instant .. max_events: the feature spec, as for :func:`book_features_step`.
        x_index, shift, scale: ``[F]`` the column of each model input and
            its standardisation (int64, float64, float64).
        dt_column, dt_scale: the model's dt is that column over dt_scale.
        limit: an input or dt beyond this (or not finite) is refused with
            reason code ``overflow_code``.

    Returns:
        ``(x [B, F] float32, dt [B] float32, accepted [B] bool, code [B]
        int64)``: code 0 where accepted (or not active), else 1 + the index
        of :data:`book_stream.TICK_REASONS`, or ``overflow_code``.
    """
    levels = state[0].shape[2] if _is_state(state) else 0
    spec = _spec(levels, instant, depth_imbalance, ofi_levels, rolling, windows, time_windows)
    _check(in_f64, in_i64, state, spec, x_index, shift, scale, dt_column, max_events)
    args = (in_f64, in_i64, list(state), *spec, max_events, x_index, shift, scale, dt_column,
            float(dt_scale), float(limit), overflow_code)
    if plain_eager(in_f64, in_i64, x_index, shift, scale, *state):
        return _KERNELS[in_f64.device.type](*args)
    return torch.ops.ma_kernels.stream_inputs(*args)


def _check(in_f64, in_i64, state, spec, x_index, shift, scale, dt_column, max_events) -> None:
    if not _is_state(state):
        raise ValueError(f"state must be the {len(STATE)} tensors {STATE} of stream_state")
    device, batch, levels = state[0].device, state[0].shape[0], state[0].shape[2]
    check_exact("in_f64", in_f64, (batch, 4 * levels + 3), torch.float64, device,
                  contiguous=True)
    check_exact("in_i64", in_i64, (batch, 3), torch.int64, device, contiguous=True)
    inputs = x_index.shape[0] if isinstance(x_index, torch.Tensor) else -1
    check_exact("x_index", x_index, (inputs,), torch.int64, device, contiguous=True)
    for name, t in (("shift", shift), ("scale", scale)):
        check_exact(name, t, (inputs,), torch.float64, device, contiguous=True)
    columns = _column_count(spec)
    if columns > MAX_COLUMNS:
        raise ValueError(f"the spec has {columns} columns; the streaming kernels take at most "
                         f"{MAX_COLUMNS}")
    if not 0 <= dt_column < columns:
        raise ValueError(f"dt_column {dt_column} is not a column of the spec ({columns})")
    # (A range check reads the values: not while a CUDA graph is being captured.)
    capturing = x_index.is_cuda and torch.cuda.is_current_stream_capturing()
    if x_index.numel() and not capturing and not (
            0 <= int(x_index.min()) and int(x_index.max()) < columns):
        raise ValueError(f"x_index must name columns 0 .. {columns - 1}")
    capacity = state[3].shape[1]
    if spec[5] and spec[3] and capacity < max_events or max(spec[4], default=1) > capacity:
        raise ValueError(f"the state's ring has {capacity} slots; the spec needs more")
    _check_state(state, device)


def _outputs(in_f64: torch.Tensor, inputs: int, time_windows: int):
    """Every buffer the kernels write comes from here."""
    batch, device = in_f64.shape[0], in_f64.device
    return (torch.empty(batch, inputs, dtype=torch.float32, device=device),
            torch.empty(batch, dtype=torch.float32, device=device),
            torch.empty(batch, dtype=torch.bool, device=device),
            torch.empty(batch, dtype=torch.int64, device=device),
            torch.empty(batch, max(time_windows, 1), dtype=torch.uint8, device=device))


def _run(in_f64, in_i64, state, instant, depth, ofi_levels, rolling, windows,
         time_windows, max_events, x_index, shift, scale, dt_column, dt_scale, limit,
         overflow_code, device, stream):
    """The kernel on ``device`` (-1: the CPU) and ``stream``."""
    out = _outputs(in_f64, x_index.shape[0], len(time_windows))
    if in_f64.shape[0]:
        _C.stream_inputs(in_f64.data_ptr(), in_i64.data_ptr(), in_f64.shape[0],
                         state[0].shape[2], _state(state, max_events), instant, depth,
                         ofi_levels, rolling, windows, time_windows, x_index.shape[0],
                         x_index.data_ptr(), shift.data_ptr(), scale.data_ptr(), dt_column,
                         dt_scale, limit, overflow_code, [t.data_ptr() for t in out], device,
                         stream)
    return out[:4]


def cpu_kernel(
    in_f64: torch.Tensor, in_i64: torch.Tensor, state: list[torch.Tensor], instant: list[int],
    depth_imbalance: list[int], ofi_levels: int, rolling: list[int], windows: list[int],
    time_windows: list[int], max_events: int, x_index: torch.Tensor, shift: torch.Tensor,
    scale: torch.Tensor, dt_column: int, dt_scale: float, limit: float, overflow_code: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _run(in_f64, in_i64, state, instant, depth_imbalance, ofi_levels, rolling, windows,
                time_windows, max_events, x_index, shift, scale, dt_column, dt_scale, limit,
                overflow_code, -1, 0)


def cuda_kernel(*args):
    return _run(*args, *launch_args(args[0]))


def fake(in_f64, in_i64, state, instant, depth, ofi_levels, rolling, windows, time_windows,
         max_events, x_index, *rest):
    return _outputs(in_f64, x_index.shape[0], len(time_windows))[:4]


_KERNELS = {"cpu": cpu_kernel, "cuda": cuda_kernel}

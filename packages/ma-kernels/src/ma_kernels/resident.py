"""ResidentStream: raw ticks to model outputs in a kernel that stays on the GPU.

Launched once, the kernel loads the model's weight matrices into the shared
memory of a thread-block cluster (16 blocks where the GPU allows, else 8),
in bf16, each block the slices it multiplies (csrc/cuda/resident_stages.cuh),
and waits on a request number in pinned, mapped host memory; a round (one
tick per instrument, any subset active) costs no launch, graph replay or
copy call: the host writes the round and bumps the number, the kernel
checks each tick (``book_tick_reasons``), computes its features
(``book_features_step``), standardises them, commits the accepted ones
(``book_features_commit``), runs the whole model in float32 against the
bf16 weights and writes the outputs and a done number back, where the host
spins on it. The state is the caller's tensors (feature state, KV caches,
positions), so the graph path and this one can take turns on it.

The bf16 weights are the one difference from ``transformer_step``: a
model's probabilities agree with its float32 path within
:data:`PROBABILITY_TOLERANCE`. A model whose weights do not fit one
cluster's shared memory (the constructor says) runs on the graph path.

Never left spinning: the kernel leaves after ``idle_timeout`` seconds
without a round (the next round relaunches it); a round not answered
within ``timeout`` raises; ``close()`` (also on garbage collection and at
interpreter exit) stops it. Between rounds the kernel holds no state of its
own but the weights: after the caller changes the state tensors (a restore)
or the parameters, ``close()`` makes the next round start afresh. CUDA
only; csrc/resident_stream.h.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from . import _C, step
from .book import _spec
from .book_stream import STATE

MAX_COLUMNS = 128  # csrc/resident_stream.h
#: Largest difference of a probability from the float32 path's (bf16 weights);
#: the test models (ma-runtime's tests) differ by at most 3e-4.
PROBABILITY_TOLERANCE = 2e-3


def supported(model_dim: int, heads: int, layers: int, columns: int,
              device: torch.device | str) -> bool:
    """Whether a model of these sizes over ``columns`` feature columns runs
    resident on ``device`` (a GPU may still lack room: the constructor says)."""
    return (torch.device(device).type == "cuda" and hasattr(_C, "ResidentStream")
            and step.supports(model_dim, heads, layers, device) and columns <= MAX_COLUMNS)


class ResidentStream:
    """The resident kernel over a model's parameters and caches and a feature state.

    Args:
        params, keys, values, pos, heads, window, dilations: as for
            :func:`ma_kernels.transformer_step` (B = the instruments).
        state: the feature state (:func:`ma_kernels.book_stream.stream_state`).
        spec: the feature spec as keywords of :func:`book_features_step`
            (``instant``, ``depth_imbalance``, ``ofi_levels``, ``rolling``,
            ``windows``, ``time_windows``), and ``max_events``.
        x_index, shift, scale: ``[F]`` the feature column of each model input
            and its standardisation ``(column - shift) * scale`` (float64);
            ``dt_column`` and ``dt_scale`` the model's dt.
        limit: a standardised input (or dt) beyond this is refused with
            reason code ``overflow_code``.
        trace: stamp the stages of each round, for :meth:`stage_times`.
    """

    def __init__(self, *, params: Sequence[torch.Tensor], keys: Sequence[torch.Tensor],
                 values: Sequence[torch.Tensor], pos: torch.Tensor, heads: int, window: int,
                 dilations: Sequence[int], state: Sequence[torch.Tensor],
                 spec: Mapping[str, object], x_index: torch.Tensor, shift: torch.Tensor,
                 scale: torch.Tensor, dt_column: int, dt_scale: float, limit: float,
                 overflow_code: int, idle_timeout: float = 1.0, timeout: float = 5.0,
                 trace: bool = False) -> None:
        if not (idle_timeout > 0 and timeout > 0):
            raise ValueError("idle_timeout and timeout must be positive seconds")
        batch, levels = pos.shape[0], state[0].shape[2]
        device = pos.device
        if device.type != "cuda" or not hasattr(_C, "ResidentStream"):
            raise ValueError("the resident stream runs on CUDA, in a build with CUDA kernels")
        inputs = params[0].shape[1]
        # The model's checks, on stand-in inputs of the right shapes.
        step._check(torch.zeros(batch, inputs, device=device), torch.zeros(batch, device=device),
                    torch.zeros(batch, dtype=torch.bool, device=device), params, keys, values,
                    pos, heads, window, dilations)
        if len(state) != len(STATE) or any(t.device != device for t in state):
            raise ValueError(f"state must be the {STATE} tensors on {device}")
        for name, t, dtype in (("x_index", x_index, torch.int64), ("shift", shift, torch.float64),
                               ("scale", scale, torch.float64)):
            if t.shape != (inputs,) or t.dtype != dtype or t.device != device:
                raise ValueError(f"{name} must be [{inputs}] {dtype} on {device}")
        codes = _spec(levels, spec["instant"], spec.get("depth_imbalance", ()),
                      spec.get("ofi_levels", 0), spec.get("rolling", ()), spec.get("windows", ()),
                      spec.get("time_windows", ()))
        self.batch, self.levels = batch, levels
        self.outputs = params[-4].shape[0] + params[-2].shape[0]
        self._keep = (params, keys, values, pos, state, x_index, shift, scale)  # alive while used
        dims = step._dims(torch.empty(batch, inputs), params, heads, window, dilations)
        self._native = _C.ResidentStream(
            dims, list(dilations), [p.data_ptr() for p in params], [k.data_ptr() for k in keys],
            [v.data_ptr() for v in values], pos.data_ptr(), *codes, levels,
            (*(t.data_ptr() for t in state), state[3].shape[1], int(spec.get("max_events", 1))),
            x_index.data_ptr(), shift.data_ptr(), scale.data_ptr(), dt_column, float(dt_scale),
            float(limit), overflow_code, float(idle_timeout), device.index or 0, float(timeout),
            bool(trace))
        self._result = np.zeros((batch, self.outputs + 2))
        self._finalizer = weakref.finalize(self, self._native.stop)

    def step(self, in_f64: np.ndarray, in_i64: np.ndarray,
             out: np.ndarray | None = None) -> np.ndarray:
        """One round: ``in_f64 [B, 4 levels + 3]`` (bid, bid size, ask, ask
        size per level, then trade price, size, side), ``in_i64 [B, 3]``
        (time, active flag, event type) -> ``[B, outputs + 2]`` float64: per
        horizon the direction probabilities (down, stationary, up), the
        regression outputs, the reason code (0 when accepted or not active)
        and the instrument's sequence number. ``out``: a C-contiguous
        float64 array of that shape to write into; by default the stream's
        own, which the next round overwrites."""
        result = self._result if out is None else out
        if (not isinstance(result, np.ndarray) or result.shape != self._result.shape
                or result.dtype != np.float64 or not result.flags.c_contiguous):
            raise ValueError(f"out must be a C-contiguous float64 array of shape "
                             f"{self._result.shape}")
        self._native.step(in_f64, in_i64, result)
        return result

    def stage_times(self) -> np.ndarray:
        """With ``trace=True``: the last round's stages in ns since the kernel
        saw it (its first cluster's clock): the inputs featurised, the
        embedding, then per layer (and tile of 8 instruments) 11 stamps: each
        norm, projection and reduce, and each of the three exchanges between
        the cluster's blocks both before and after its barrier; then the
        outputs written. Empty without a trace."""
        return np.asarray(self._native.stage_times(), dtype=np.int64)

    def close(self) -> None:
        """Stops the kernel (the next ``step`` launches it again)."""
        self._native.stop()

    def __enter__(self) -> ResidentStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

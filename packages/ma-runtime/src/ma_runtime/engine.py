"""The streaming engine: raw ticks in, one signal per tick out, for one
instrument or many at once, every instrument's state on the device.

``push(ticks, instruments)`` takes events of any subset of the instruments,
in rounds of at most one tick per instrument, in arrival order; each round
is one step on the device. There each tick is checked
(``FeatureState.reasons``: the checks of ``ma_features.bad_rows``, a missing
best quote, time going backwards); the good ones update their instrument's
features (``ma_features.FeatureState`` of the model's spec), which are
standardised with the training statistics (then, with a rolling
normalisation, against the instrument's last inputs: ``ma_model.rolling_step``)
and fed to ``MATransformer.step`` against the instruments' ring-buffer KV
caches. A tick whose standardised inputs would overflow the model is refused
there too. A refused tick is counted by reason (:data:`REJECTIONS`) and
leaves its instrument as if it never came. On a GPU the step is one captured
CUDA graph between one copy in and one copy out; the host only packs the
ticks and reads the results.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import ma_features
import ma_kernels
import ma_model

# A standardised input beyond this many deviations is refused: finite, but
# the model's float32 arithmetic would overflow on it (LayerNorm squares it).
INPUT_LIMIT = ma_model.INPUT_LIMIT  # training and evaluation refuse the same
_CHECKED = {"empty_side": "no best bid or no best ask price (the features are undefined)",
            "time_backwards": "time before the instrument's previous tick"}
#: Reason -> what is wrong. The order is the wire format's (ma_runtime.wire):
#: first the device's checks, in their precedence, then the host's.
REJECTIONS = {
    **{k: ma_features.REASONS.get(k) or _CHECKED[k] for k in ma_kernels.book_stream.TICK_REASONS},
    "overflow": f"a standardised input not finite or beyond {INPUT_LIMIT:g} deviations",
    "unknown_instrument": "instrument id outside 0 .. instruments - 1",
    "levels": "fewer book levels than the engine reads",
}
_NAMES = np.array([None, *REJECTIONS], dtype=object)  # a device code -> its reason
_OVERFLOW, _UNKNOWN_INSTRUMENT, _LEVELS = (
    list(REJECTIONS).index(name) + 1 for name in ("overflow", "unknown_instrument", "levels"))
SNAPSHOT_FORMAT = ("ma-runtime-engine", 3)
_NO_RANGE = contextlib.nullcontext()
_STAGES = ("ma.pack", "ma.step", "ma.signals")  # the NVTX ranges of a push
MODES = ("eager", "graph", "resident")
# The default mode on CUDA takes the resident kernel up to this many
# instruments and the graph beyond: on an H100 the resident kernel's push
# is faster up to 32 (240 against 295 us p50), the graph's from 64 (332
# against 516 us; tools/device/bench_modes.py, modes-h100-588df62.json).
RESIDENT_MAX_INSTRUMENTS = 32
_log = logging.getLogger("ma_runtime")
_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")
_TRADE = ("trade_price", "trade_size", "trade_side")


class _NvtxRange:
    """A named NVTX range, which Nsight Systems shows. A plain class: a use of
    ``torch.cuda.nvtx.range`` (a generator context manager) costs ~2 us of
    host time, three times a push."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        torch.cuda.nvtx.range_push(self.name)

    def __exit__(self, *exc) -> None:
        torch.cuda.nvtx.range_pop()


def auto_device() -> str:
    """cuda where torch sees a GPU and ma_kernels can run on it, else cpu."""
    return "cuda" if torch.cuda.is_available() and ma_kernels.cuda_available() else "cpu"


@dataclass(frozen=True)
class Signals:
    """What one ``push`` gave: a signal per accepted tick, in input order, and
    the rejected ticks with their reasons (keys of :data:`REJECTIONS`).

    ``sequence`` is the instrument's count of accepted ticks, this one
    included; ``probabilities [A, H, 3]`` are down, stationary, up per
    horizon; ``regression [A, R]``; all on the host."""

    index: np.ndarray
    instrument: np.ndarray
    time: np.ndarray
    sequence: np.ndarray
    probabilities: torch.Tensor
    regression: torch.Tensor
    rejected_index: np.ndarray
    rejected_reason: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


class StreamEngine:
    """Streams raw ticks of ``instruments`` instruments through ``model``.

    ``inputs`` is what the model reads (``ma_model.load_model`` returns it):
    its feature spec, standardised with the training split's statistics.
    ``levels``: book levels the engine reads (default the spec's); pushed
    ticks may have more (the rest is not read), not fewer.
    ``max_events`` bounds what a time window holds (``FeatureState``).
    ``mode`` runs each round's device step as ``"eager"`` ops (the CPU), one
    captured CUDA ``"graph"``, or in the ``"resident"`` kernel
    (``ma_kernels.ResidentStream``: models whose weights fit one thread-block
    cluster's shared memory in bf16, probabilities within
    ``ma_kernels.resident.PROBABILITY_TOLERANCE`` of the float32 modes).
    On CUDA the default is the resident kernel where the model fits it and
    the engine has at most ``RESIDENT_MAX_INSTRUMENTS`` instruments (where
    it is the faster), the graph otherwise, the reason logged (logger
    ``ma_runtime``); asked for and unable to run, the resident kernel says
    why in a warning.
    The resident kernel stops on ``close()`` (or leaving a ``with`` block,
    also on an error), after a second without ticks, and at interpreter
    exit; the next push starts it again.
    """

    def __init__(
        self,
        model: ma_model.MATransformer,
        inputs: ma_model.ModelInputs,
        *,
        instruments: int = 1,
        levels: int | None = None,
        device: torch.device | str = "cpu",
        mode: str | None = None,
        max_events: int = 4096,
    ) -> None:
        if isinstance(instruments, bool) or not isinstance(instruments, int) or instruments < 1:
            raise ValueError(f"instruments must be an int >= 1, got {instruments!r}")
        if len(inputs.spec.names) != model.config.input_dim:
            raise ValueError(f"the model reads {model.config.input_dim} columns; the inputs' spec "
                             f"has {len(inputs.spec.names)} {inputs.spec.names}")
        self.instruments, self.inputs = instruments, inputs
        self.levels = max(inputs.spec.levels, 1) if levels is None else levels
        if self.levels < inputs.spec.levels:
            raise ValueError(f"levels={self.levels}, but the spec reads {inputs.spec.levels}")
        self.device = torch.device(device)
        self.mode = mode or self._default_mode()
        if self.mode not in MODES or (self.mode != "eager" and self.device.type != "cuda"):
            raise ValueError(f"mode must be one of {MODES} ('graph' and 'resident' on CUDA), got "
                             f"{mode!r} on {self.device}")
        self.model = model.to(self.device).eval()
        self.features = inputs.stream(instruments, self.device, max_events, self.levels)
        self.cache = model.new_cache(instruments, self.device)
        # Rolling normalisation (inputs.rolling ticks): each instrument's last
        # standardised inputs (ma_model.rolling_step); none without it.
        self._recent = torch.zeros(instruments, inputs.rolling or 0, len(inputs.spec.names),
                                   dtype=torch.float64, device=self.device)
        names = self.features.names
        shift, scale = inputs.standardizer.affine(self.device)
        # The columns to the model's inputs: (column - shift) * scale, dt = column / dt_scale.
        self._standardise = {
            "x_index": torch.tensor([names.index(n) for n in inputs.spec.names],
                                    device=self.device),
            "shift": shift.contiguous(), "scale": scale.contiguous(),
            "dt_column": names.index(ma_model.DT), "dt_scale": float(inputs.dt_scale),
            "limit": INPUT_LIMIT, "overflow_code": _OVERFLOW}
        n, width = instruments, 4 * self.levels + len(_TRADE)
        # Ticks in, one buffer (one copy a round): the book and trades as
        # float64 [n, width]; time, active flag and event type as int64 [n, 3].
        self._in = torch.zeros(n * (width + 3), dtype=torch.float64, device=self.device)
        horizons, regression = model.config.num_horizons, model.config.num_regression
        self._horizons = horizons
        # Signals out: probabilities, regression, reason code (0: accepted), sequence.
        self._out = torch.zeros(n, 3 * horizons + regression + 2, dtype=torch.float64,
                                device=self.device)
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        # What the host writes and reads: the device buffers themselves on a
        # CPU, pinned twins copied in and out around each step on a GPU.
        on_host = self.device.type == "cpu"
        self._host_in, self._host_out = (
            t if on_host else torch.zeros(t.shape, dtype=t.dtype, pin_memory=True)
            for t in (self._in, self._out))
        self._in_f64, self._in_i64 = _split_inputs(self._in, n, width)
        self._stage_f64, self._stage_i64 = (t.numpy() for t in _split_inputs(self._host_in, n,
                                                                             width))
        self._result = self._host_out.numpy()
        self._every = np.arange(n)  # a push of every instrument once, in order, stages by slices
        self._ranges = {name: _NvtxRange(name) if self.device.type == "cuda" else _NO_RANGE
                        for name in _STAGES}
        self._graph = self._resident = None
        if self.mode == "resident":
            self._resident = self._resident_stream(asked=mode is not None)
        if self.mode == "graph":
            self._capture()

    def _default_mode(self) -> str:
        if self.device.type != "cuda":
            return "eager"
        if self.instruments > RESIDENT_MAX_INSTRUMENTS:
            _log.info("the CUDA graph for %d instruments: the resident kernel is the faster up to "
                      "%d", self.instruments, RESIDENT_MAX_INSTRUMENTS)
            return "graph"
        return "resident"

    def _resident_stream(self, asked: bool):
        """The resident kernel over this engine's state, or None where it cannot
        run: the engine then takes the graph, saying why in a warning where the
        caller ``asked`` for the kernel, in the log where it was the default."""
        cfg, spec = self.model.config, self.features.spec
        why = None
        if self.inputs.rolling is not None:
            why = "the kernel has no rolling normalisation (data.rolling_normalization)"
        elif not ma_kernels.resident.supported(cfg.model_dim, cfg.num_heads, cfg.num_layers,
                                             len(spec.names), self.device):
            why = "the model or its features are outside the kernel's family"
        else:
            try:
                return ma_kernels.ResidentStream(
                    params=self.model.step_parameters, keys=self.cache.keys,
                    values=self.cache.values, pos=self.cache.pos, heads=cfg.num_heads,
                    window=cfg.window, dilations=list(cfg.dilations),
                    state=self.features.kernel_state, spec=self.features.kernel_spec,
                    **self._standardise)
            except (ValueError, RuntimeError) as e:  # no room on this GPU, say
                why = str(e)
        message = f"resident mode unavailable ({why}); using the CUDA graph"
        if asked:
            warnings.warn(message, stacklevel=3)
        else:
            _log.info(message)
        self.mode = "graph"
        return None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, instruments: int = 1, device: str = "auto",
                        **options) -> StreamEngine:
        """An engine for the model and inputs of a training checkpoint."""
        if device == "auto":
            device = auto_device()
        model, inputs = ma_model.load_model(path, device)
        return cls(model, inputs, instruments=instruments, device=device, **options)

    # The device step: two kernels and the outputs' assembly, so it captures
    # as one CUDA graph; the resident kernel runs the same in place.
    @torch.inference_mode()
    def _step(self) -> None:
        x, dt, accepted, code = ma_kernels.stream_inputs(
            self._in_f64, self._in_i64, self.features.kernel_state, **self.features.kernel_spec,
            **self._standardise)
        if self.inputs.rolling is not None:
            x = ma_model.rolling_step(self._recent, self.cache.pos, x, accepted)
        logits, regression = self.model.step(x, dt, self.cache, accepted)
        # Into float64 directly: a float32 sequence number would round past 2^24 ticks.
        torch.cat([logits.softmax(-1).flatten(1), regression, code[:, None],
                   self.cache.pos[:, None]], dim=1, out=self._out)

    def _capture(self) -> None:
        # Warm up on a side stream (lazy inits), then record one step. No
        # instrument is active, so neither touches any state.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._step()

    def _run(self) -> np.ndarray:
        """One device step on the staged inputs; the output rows on the host
        (a view the next step overwrites)."""
        if self.device.type == "cpu":
            self._step()
            return self._result
        if self._resident is not None:  # the result rows, straight from mapped memory
            return self._resident.step(self._stage_f64, self._stage_i64, self._result)
        self._in.copy_(self._host_in, non_blocking=True)
        if self._graph is None:
            self._step()
        else:
            self._graph.replay()
        self._host_out.copy_(self._out, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self._result

    def push(self, ticks: ma_features.Ticks, instruments=None) -> Signals:
        """Feeds ``ticks`` (any number, any instruments, in arrival order);
        ``instruments`` ``[len(ticks)]`` ints name each tick's instrument
        (default 0 for all). Returns a signal per accepted tick."""
        if not isinstance(ticks, ma_features.Ticks):
            raise ValueError(f"ticks must be ma_features.Ticks, got {type(ticks).__name__}")
        n = len(ticks)
        ids = np.zeros(n, dtype=np.int64) if instruments is None else np.asarray(instruments)
        if ids.shape != (n,) or (n and ids.dtype.kind not in "iu"):
            raise ValueError(f"instruments must be {n} ints (one per tick), got "
                             f"{ids.dtype} {ids.shape}")
        if ticks.levels >= self.levels:
            if n == 1 and 0 <= ids[0] < self.instruments:
                return self._push_one(ticks, ids)
            if n == self.instruments and (ids == self._every).all():
                return self._push_every(ticks)
        codes = np.zeros(n, dtype=np.int64)  # 0, or 1 + the index of a reason in REJECTIONS
        codes[(ids < 0) | (ids >= self.instruments)] = _UNKNOWN_INSTRUMENT
        if ticks.levels < self.levels:
            codes[:] = _LEVELS
        done, rows = [], []
        pending = np.flatnonzero(codes == 0)
        rounds = _rounds(ids[pending])
        with self._ranges["ma.pack"]:
            f64, i64 = self._pack(ticks) if len(pending) else (None, None)
        count = rounds.max() + 1 if len(pending) else 0
        for r in range(count):
            taken = pending if count == 1 else pending[rounds == r]
            at = ids[taken]
            # The round's ticks at their instruments, the others inactive
            # (their stale inputs are read, never committed).
            self._stage_f64[at] = f64[taken]
            self._stage_i64[:, 1] = 0
            self._stage_i64[at] = i64[taken]
            with self._ranges["ma.step"]:
                out = self._run()[at]
            codes[taken] = out[:, -2]
            accepted = codes[taken] == 0
            done.append(taken[accepted])
            rows.append(out[accepted])
        with self._ranges["ma.signals"]:
            return self._signals(ticks, ids, codes, done, rows)

    def _push_one(self, ticks: ma_features.Ticks, ids: np.ndarray) -> Signals:
        """``push`` of one tick of a known instrument, the latency-critical
        case: no rounds to form, the signal built directly."""
        b, k, f64, i64 = int(ids[0]), self.levels, self._stage_f64, self._stage_i64
        with self._ranges["ma.pack"]:
            for j, name in enumerate(_BOOK):
                f64[b, j * k:(j + 1) * k] = getattr(ticks, name)[0, :k]
            f64[b, 4 * k:] = (ticks.trade_price[0], ticks.trade_size[0], ticks.trade_side[0])
            i64[:, 1] = 0
            i64[b] = (ticks.time[0], 1, ticks.event[0])
        with self._ranges["ma.step"]:
            row = self._run()[b]
        with self._ranges["ma.signals"]:
            if row[-2]:  # refused on the device
                codes = row[-2:-1].astype(np.int64)
                return self._signals(ticks, ids, codes, [np.zeros(0, dtype=np.int64)],
                                     [row[None][:0]])
            self.accepted += 1
            values, h = row[:-2].astype(np.float32), self._horizons  # shaped in numpy: cheaper
            return Signals(index=np.zeros(1, dtype=np.int64), instrument=ids.astype(np.int64),
                           time=ticks.time[:1].copy(), sequence=np.array([int(row[-1])]),
                           probabilities=torch.from_numpy(values[: 3 * h].reshape(1, h, 3)),
                           regression=torch.from_numpy(values[None, 3 * h :]),
                           rejected_index=np.zeros(0, dtype=np.int64),
                           rejected_reason=np.zeros(0, dtype=object))

    def _push_every(self, ticks: ma_features.Ticks) -> Signals:
        """``push`` of a tick of every instrument in id order, the usual
        many-instrument push: one round, staged column by column (no rounds
        to form, no fancy indexing: at 256 instruments 28 us of host time
        against 63 on a 2-core CPU)."""
        k, f64, i64 = self.levels, self._stage_f64, self._stage_i64
        with self._ranges["ma.pack"]:
            for j, name in enumerate(_BOOK):
                f64[:, j * k:(j + 1) * k] = getattr(ticks, name)[:, :k]
            for j, name in enumerate(_TRADE):
                f64[:, 4 * k + j] = getattr(ticks, name)
            i64[:, 0], i64[:, 1], i64[:, 2] = ticks.time, 1, ticks.event
        with self._ranges["ma.step"]:
            out = self._run()
        with self._ranges["ma.signals"]:
            codes = out[:, -2].astype(np.int64)
            accepted = np.flatnonzero(codes == 0)
            return self._signals(ticks, self._every, codes, [accepted], [out[accepted]])

    def _pack(self, ticks: ma_features.Ticks) -> tuple[np.ndarray, np.ndarray]:
        """Every tick as a row of the step's inputs: float64 book and trade,
        int64 time, active flag and event type."""
        k = self.levels
        f64 = np.concatenate([*(getattr(ticks, name)[:, :k] for name in _BOOK),
                              *(getattr(ticks, name)[:, None] for name in _TRADE)], axis=1)
        i64 = np.stack([ticks.time, np.ones(len(ticks), np.int64), ticks.event], axis=1)
        return f64, i64

    def _signals(self, ticks, ids, codes, done, rows) -> Signals:
        if len(done) == 1:
            done, rows = done[0], rows[0]
        else:  # rounds interleave: back to input order
            done = np.concatenate(done) if done else np.zeros(0, dtype=np.int64)
            rows = np.concatenate(rows) if rows else np.zeros((0, self._out.shape[1]))
            order = np.argsort(done, kind="stable")
            done, rows = done[order], rows[order]
        refused = np.flatnonzero(codes)
        reasons = _NAMES[codes[refused]]
        if len(refused):
            self.rejected.update(reasons.tolist())
        self.accepted += len(done)
        values, h = rows[:, :-2].astype(np.float32), self._horizons  # shaped in numpy: cheaper
        return Signals(
            index=done, instrument=ids[done].astype(np.int64), time=ticks.time[done],
            sequence=rows[:, -1].astype(np.int64),
            probabilities=torch.from_numpy(values[:, : 3 * h].reshape(-1, h, 3)),
            regression=torch.from_numpy(values[:, 3 * h :]),
            rejected_index=refused, rejected_reason=reasons,
        )

    def reset(self) -> None:
        """Forgets every tick seen: each instrument starts over, counters at 0."""
        state = self.snapshot()
        for group in ("keys", "values"):
            state[group] = [torch.zeros_like(t) for t in state[group]]
        state.update(features={k: torch.zeros_like(v) for k, v in state["features"].items()},
                     pos=torch.zeros_like(state["pos"]), recent=torch.zeros_like(state["recent"]),
                     rejected={}, accepted=0)
        self.restore(state)

    def snapshot(self) -> dict:
        """The whole engine state on the host: features (each instrument's
        last tick included), KV caches, the rolling normalisation's recent
        inputs, the counters. ``restore`` (or ``load``) puts it
        back; the signals then equal those of an engine that never stopped."""
        return {
            "format": SNAPSHOT_FORMAT[0], "format_version": SNAPSHOT_FORMAT[1],
            "instruments": self.instruments, "levels": self.levels,
            "features": {k: v.cpu() for k, v in self.features.state_dict().items()},
            "keys": [t.cpu().clone() for t in self.cache.keys],
            "values": [t.cpu().clone() for t in self.cache.values],
            "pos": self.cache.pos.cpu().clone(),
            "recent": self._recent.cpu().clone(),
            "rejected": dict(self.rejected), "accepted": self.accepted,
        }

    def restore(self, state: dict) -> None:
        """Puts a ``snapshot`` back, in place (a captured graph stays valid)."""
        if (state.get("format"), state.get("format_version")) != SNAPSHOT_FORMAT:
            raise ValueError(f"not an engine snapshot of format {SNAPSHOT_FORMAT}")
        for name in ("instruments", "levels"):
            if state[name] != getattr(self, name):
                raise ValueError(f"the snapshot has {name}={state[name]}, this engine "
                                 f"{getattr(self, name)}")
        self.features.load_state_dict({k: v.to(self.device) for k, v in state["features"].items()})
        for own, saved in zip([*self.cache.keys, *self.cache.values, self.cache.pos],
                              [*state["keys"], *state["values"], state["pos"]], strict=True):
            if own.shape != saved.shape:
                raise ValueError(f"the snapshot's KV cache is {tuple(saved.shape)}, this "
                                 f"model's {tuple(own.shape)}")
            own.copy_(saved)
        if state["recent"].shape != self._recent.shape:
            raise ValueError(f"the snapshot's rolling normalisation keeps "
                             f"{tuple(state['recent'].shape)} inputs, this engine's "
                             f"{tuple(self._recent.shape)}")
        self._recent.copy_(state["recent"])
        self.rejected = Counter(state["rejected"])
        self.accepted = int(state["accepted"])
        self.close()  # a resident kernel's SMs may cache what was just replaced

    def close(self) -> None:
        """Stops the resident kernel, if one runs (a later push starts it
        again); nothing to stop in the other modes."""
        if self._resident is not None:
            self._resident.close()

    def __enter__(self) -> StreamEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self, path: str | Path) -> Path:
        """``snapshot`` to a file (an ma-model checkpoint: atomic, no pickled code)."""
        return ma_model.save_checkpoint(path, engine=self.snapshot())

    def load(self, path: str | Path) -> None:
        """``restore`` from a file written by ``save``."""
        self.restore(ma_model.load_checkpoint(path)["engine"])



def _split_inputs(buffer: torch.Tensor, n: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 [n, width] and int64 [n, 3] views of one input buffer."""
    return buffer[: n * width].view(n, width), buffer[n * width :].view(torch.int64).view(n, 3)


def _rounds(ids: np.ndarray) -> np.ndarray:
    """Each tick's round: how many earlier ticks of its instrument there are."""
    if len(ids) <= 1 or np.bincount(ids).max() == 1:  # the usual push: one round
        return np.zeros(len(ids), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ranked = ids[order]
    first = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids)) - np.repeat(first, np.diff(np.r_[first, len(ids)]))
    return rank

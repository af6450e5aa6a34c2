"""The streaming engine: raw ticks in, one signal per tick out, for one
instrument or many at once, every instrument's state on the device.

``push(ticks, instruments)`` takes events of any subset of the instruments.
The host checks each tick (:data:`REJECTIONS`): a bad tick is counted by
reason and leaves its instrument as if it never came. The good ones go in
rounds of at most one tick per instrument, in arrival order, and each round
is one step on the device: the instruments that ticked update their features
(``ma_features.FeatureState`` of the model's spec), which are standardised
with the training statistics and fed to ``MATransformer.step`` against their
ring-buffer KV caches. A tick whose standardised inputs would overflow the
model is refused there, with the same guarantee. On a GPU the step is one
captured CUDA graph, between one copy in and one copy out.
"""

from __future__ import annotations

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
INPUT_LIMIT = 1e6
REJECTIONS = {
    **{k: v for k, v in ma_features.REASONS.items()
       if k not in ("malformed", "time_not_monotonic")},
    "unknown_instrument": "instrument id outside 0 .. instruments - 1",
    "levels": "fewer book levels than the engine reads",
    "empty_side": "no best bid or no best ask price (the features are undefined)",
    "time_backwards": "time before the instrument's previous tick",
    "overflow": f"a standardised input not finite or beyond {INPUT_LIMIT:g} deviations",
}
SNAPSHOT_FORMAT = ("ma-runtime-engine", 1)
_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")
_TRADE = ("trade_price", "trade_size", "trade_side")


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
    ``cuda_graph`` defaults to True on CUDA.
    """

    def __init__(
        self,
        model: ma_model.MATransformer,
        inputs: ma_model.ModelInputs,
        *,
        instruments: int = 1,
        levels: int | None = None,
        device: torch.device | str = "cpu",
        cuda_graph: bool | None = None,
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
        self.model = model.to(self.device).eval()
        self.features = inputs.stream(instruments, self.device, max_events)
        self.cache = model.new_cache(instruments, self.device)
        names = self.features.names
        self._x_index = torch.tensor([names.index(n) for n in inputs.spec.names],
                                     device=self.device)
        self._dt_index = names.index(ma_model.DT)
        self._shift, self._scale = inputs.standardizer.affine(self.device)
        k, n = self.levels, instruments
        # Ticks in: the book and trades as float64, time and the active flag as int64.
        self._in_f64 = torch.zeros(n, 4 * k + len(_TRADE), dtype=torch.float64, device=self.device)
        self._in_i64 = torch.zeros(n, 2, dtype=torch.int64, device=self.device)
        horizons, regression = model.config.num_horizons, model.config.num_regression
        # Signals out: probabilities, regression, accepted, sequence, as one float64 row.
        self._out = torch.zeros(n, 3 * horizons + regression + 2, dtype=torch.float64,
                                device=self.device)
        self._last_time = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self._graph = None
        if cuda_graph if cuda_graph is not None else self.device.type == "cuda":
            self._capture()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, instruments: int = 1, device: str = "auto",
                        **options) -> StreamEngine:
        """An engine for the model and inputs of a training checkpoint."""
        if device == "auto":
            device = auto_device()
        model, inputs = ma_model.load_model(path, device)
        return cls(model, inputs, instruments=instruments, device=device, **options)

    # The device step: tensor ops only, so it captures as one CUDA graph.
    @torch.inference_mode()
    def _step(self) -> None:
        k = self.levels
        book = self._in_f64[:, : 4 * k].view(-1, 4, k)
        event = {name: book[:, i] for i, name in enumerate(_BOOK)}
        event.update({name: self._in_f64[:, 4 * k + i] for i, name in enumerate(_TRADE)})
        event["time"] = self._in_i64[:, 0]
        active = self._in_i64[:, 1] > 0
        inputs: dict[str, torch.Tensor] = {}

        def accept(values: torch.Tensor) -> torch.Tensor:
            # Standardised as in training; refused where the model would overflow.
            x = (values.index_select(1, self._x_index) - self._shift) * self._scale
            dt = values[:, self._dt_index] / self.inputs.dt_scale
            within = (torch.isfinite(x) & (x.abs() <= INPUT_LIMIT)).all(1)
            inputs.update(x=x, dt=dt, ok=within & torch.isfinite(dt) & (dt <= INPUT_LIMIT))
            return inputs["ok"]

        self.features.update(event, active, accept)
        accepted = active & inputs["ok"]
        logits, regression = self.model.step(inputs["x"].float(), inputs["dt"].float(),
                                             self.cache, accepted)
        self._out.copy_(torch.cat([logits.softmax(-1).flatten(1).double(), regression.double(),
                                   accepted[:, None].double(), self.cache.pos[:, None].double()],
                                  dim=1))

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
        self._host_f64 = torch.zeros(self._in_f64.shape, dtype=torch.float64, pin_memory=True)
        self._host_i64 = torch.zeros(self._in_i64.shape, dtype=torch.int64, pin_memory=True)
        self._host_out = torch.zeros(self._out.shape, dtype=torch.float64, pin_memory=True)

    def _run(self, f64: np.ndarray, i64: np.ndarray) -> np.ndarray:
        """One device step on these inputs; the output rows on the host."""
        if self._graph is None:
            self._in_f64.copy_(torch.from_numpy(f64))
            self._in_i64.copy_(torch.from_numpy(i64))
            self._step()
            return self._out.numpy().copy()  # the next round overwrites _out
        self._host_f64.numpy()[:] = f64
        self._host_i64.numpy()[:] = i64
        self._in_f64.copy_(self._host_f64, non_blocking=True)
        self._in_i64.copy_(self._host_i64, non_blocking=True)
        self._graph.replay()
        self._host_out.copy_(self._out, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self._host_out.numpy().copy()

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
        reasons = self._host_checks(ticks, ids)
        out_rows: dict[int, np.ndarray] = {}
        pending = [i for i in range(n) if reasons[i] is None]
        while pending:  # a round takes each instrument's first pending tick
            round_rows, later, taken = [], [], set()
            for i in pending:
                (later if ids[i] in taken else round_rows).append(i)
                taken.add(ids[i])
            for i in round_rows:
                if ticks.time[i] < self._last_time[ids[i]]:
                    reasons[i] = "time_backwards"
            round_rows = [i for i in round_rows if reasons[i] is None]
            if round_rows:
                result = self._run(*self._pack(ticks, ids, round_rows))
                for i in round_rows:
                    row = result[ids[i]]
                    if row[-2] > 0.5:
                        out_rows[i] = row
                        self._last_time[ids[i]] = ticks.time[i]
                    else:
                        reasons[i] = "overflow"
            pending = later
        return self._signals(ticks, ids, reasons, out_rows)

    def _host_checks(self, ticks: ma_features.Ticks, ids: np.ndarray) -> list[str | None]:
        """The first reason each tick is refused for, or None."""
        reasons: list[str | None] = [None] * len(ticks)

        def mark(reason: str, rows: np.ndarray) -> None:
            for i in np.flatnonzero(rows):
                reasons[i] = reasons[i] or reason

        mark("unknown_instrument", (ids < 0) | (ids >= self.instruments))
        if ticks.levels < self.levels:
            mark("levels", np.ones(len(ticks), dtype=bool))
            return reasons
        for reason, rows in ma_features.bad_rows(ticks).items():
            if reason != "time_not_monotonic":  # checked per instrument, in push
                mark(reason, rows)
        best = np.isfinite(ticks.bid_price[:, 0]) & np.isfinite(ticks.ask_price[:, 0])
        mark("empty_side", ~best)
        return reasons

    def _pack(self, ticks: ma_features.Ticks, ids: np.ndarray, rows: list[int]):
        k = self.levels
        f64 = np.zeros(tuple(self._in_f64.shape))
        i64 = np.zeros(tuple(self._in_i64.shape), dtype=np.int64)
        at = ids[rows]
        for j, name in enumerate(_BOOK):
            f64[at, j * k:(j + 1) * k] = getattr(ticks, name)[rows, :k]
        for j, name in enumerate(_TRADE):
            f64[at, 4 * k + j] = getattr(ticks, name)[rows]
        i64[at, 0] = ticks.time[rows]
        i64[at, 1] = 1
        return f64, i64

    def _signals(self, ticks, ids, reasons, out_rows) -> Signals:
        done = sorted(out_rows)
        horizons = self.model.config.num_horizons
        rows = np.stack([out_rows[i] for i in done]) if done else np.zeros((0, self._out.shape[1]))
        refused = [i for i, r in enumerate(reasons) if r is not None]
        for i in refused:
            self.rejected[reasons[i]] += 1
        self.accepted += len(done)
        return Signals(
            index=np.array(done, dtype=np.int64), instrument=ids[done].astype(np.int64),
            time=ticks.time[done], sequence=rows[:, -1].astype(np.int64),
            probabilities=torch.from_numpy(rows[:, : 3 * horizons]).float().view(-1, horizons, 3),
            regression=torch.from_numpy(rows[:, 3 * horizons : -2]).float(),
            rejected_index=np.array(refused, dtype=np.int64),
            rejected_reason=np.array([reasons[i] for i in refused], dtype=object),
        )

    def reset(self) -> None:
        """Forgets every tick seen: each instrument starts over, counters at 0."""
        state = self.snapshot()
        for group in ("keys", "values"):
            state[group] = [torch.zeros_like(t) for t in state[group]]
        state.update(features={k: torch.zeros_like(v) for k, v in state["features"].items()},
                     pos=torch.zeros_like(state["pos"]), rejected={}, accepted=0,
                     last_time=torch.full_like(state["last_time"], np.iinfo(np.int64).min))
        self.restore(state)

    def snapshot(self) -> dict:
        """The whole engine state on the host: features, KV caches, each
        instrument's last time, the counters. ``restore`` (or ``load``) puts it
        back; the signals then equal those of an engine that never stopped."""
        return {
            "format": SNAPSHOT_FORMAT[0], "format_version": SNAPSHOT_FORMAT[1],
            "instruments": self.instruments, "levels": self.levels,
            "features": {k: v.cpu() for k, v in self.features.state_dict().items()},
            "keys": [t.cpu().clone() for t in self.cache.keys],
            "values": [t.cpu().clone() for t in self.cache.values],
            "pos": self.cache.pos.cpu().clone(),
            "last_time": torch.from_numpy(self._last_time.copy()),
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
        self._last_time[:] = state["last_time"].numpy()
        self.rejected = Counter(state["rejected"])
        self.accepted = int(state["accepted"])

    def save(self, path: str | Path) -> Path:
        """``snapshot`` to a file (an ma-model checkpoint: atomic, no pickled code)."""
        return ma_model.save_checkpoint(path, engine=self.snapshot())

    def load(self, path: str | Path) -> None:
        """``restore`` from a file written by ``save``."""
        self.restore(ma_model.load_checkpoint(path)["engine"])


"""The streaming engine: one tick in, one signal out, for one instrument or
many at once, with the model's state resident on the device.

Per tick the host copies the newest raw inputs into a static buffer; the
device normalises them with the training statistics, runs
``MATransformer.step`` against the ring-buffer KV cache and turns logits into
class probabilities. On a GPU all of that is one captured CUDA graph, replayed
each tick: about sixty small kernels launched as one, so the wait is the
copies and the graph, not Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

import ma_kernels
import ma_model


def auto_device() -> str:
    """cuda where torch sees a GPU and ma_kernels can run on it, else cpu."""
    return "cuda" if torch.cuda.is_available() and ma_kernels.cuda_available() else "cpu"


class Signal(NamedTuple):
    """Per instrument: ``probabilities [I, H, 3]`` (down, stationary, up per
    horizon) and ``regression [I, R]``, on the host."""

    probabilities: torch.Tensor
    regression: torch.Tensor


class StreamEngine:
    """Streams ticks of ``instruments`` sequences through ``model``.

    ``inputs`` is what the model reads (``ma_model.load_model`` returns it
    with the model): its feature spec, standardised with the statistics of
    the training split, and ``dt`` in the training split's units, exactly as
    in training. ``cuda_graph`` defaults to True on CUDA.
    """

    def __init__(
        self,
        model: ma_model.MATransformer,
        inputs: ma_model.ModelInputs,
        *,
        instruments: int = 1,
        device: torch.device | str = "cpu",
        cuda_graph: bool | None = None,
    ) -> None:
        if instruments < 1:
            raise ValueError(f"instruments must be >= 1, got {instruments}")
        if len(inputs.spec.names) != model.config.input_dim:
            raise ValueError(f"the model reads {model.config.input_dim} columns; the inputs' spec "
                             f"has {len(inputs.spec.names)} {inputs.spec.names}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.inputs = inputs
        self.features = model.config.input_dim
        self._shift, self._scale = inputs.standardizer.affine(self.device, torch.float32)
        self._dt_scale = inputs.dt_scale
        self.cache = model.new_cache(instruments, self.device)
        self._x = torch.zeros(instruments, self.features, device=self.device)
        self._dt = torch.zeros(instruments, device=self.device)
        self._graph = None
        if cuda_graph if cuda_graph is not None else self.device.type == "cuda":
            self._capture()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        instruments: int = 1,
        device: str = "auto",
        cuda_graph: bool | None = None,
    ) -> StreamEngine:
        """An engine for the model and normalisation of a training checkpoint."""
        if device == "auto":
            device = auto_device()
        model, inputs = ma_model.load_model(path, device)
        return cls(model, inputs, instruments=instruments, device=device, cuda_graph=cuda_graph)

    @torch.inference_mode()
    def _run(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self._x - self._shift) * self._scale
        logits, regression = self.model.step(x, self._dt / self._dt_scale, self.cache)
        return logits.softmax(dim=-1), regression

    def _capture(self) -> None:
        # Warm up on a side stream (lazy inits, autotuning), then record one step.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._run()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._run()
        self._host = tuple(torch.empty(t.shape, pin_memory=True) for t in self._out)
        self._host_in = (
            torch.empty(self._x.shape, pin_memory=True),
            torch.empty(self._dt.shape, pin_memory=True),
        )
        self.reset()

    def reset(self) -> None:
        """Forgets every tick seen: the next one is position 0 again."""
        with torch.no_grad():
            for t in (*self.cache.keys, *self.cache.values, self.cache.pos):
                t.zero_()

    def step(self, x: torch.Tensor, dt: torch.Tensor) -> Signal:
        """Feeds one tick per instrument: raw features ``x [I, F]`` (the
        columns of ``inputs.spec``) and seconds since each instrument's
        previous tick ``dt [I]``, both on the host. A NaN or infinite input is
        refused with a ValueError naming it, never turned into a signal."""
        x = torch.as_tensor(x, dtype=torch.float32)
        dt = torch.as_tensor(dt, dtype=torch.float32)
        if x.shape != self._x.shape or dt.shape != self._dt.shape:
            raise ValueError(
                f"x must be {tuple(self._x.shape)} and dt {tuple(self._dt.shape)}, "
                f"got {tuple(x.shape)} and {tuple(dt.shape)}"
            )
        bad = ~torch.isfinite(x)
        if bad.any() or not torch.isfinite(dt).all():
            where = bad.nonzero()[0].tolist() if bad.any() else "dt"
            raise ValueError(f"non-finite input at (instrument, feature) {where}")
        if self._graph is None:
            self._x.copy_(x)
            self._dt.copy_(dt)
            probabilities, regression = self._run()
            return Signal(probabilities.cpu(), regression.cpu())
        self._host_in[0].copy_(x)
        self._host_in[1].copy_(dt)
        self._x.copy_(self._host_in[0], non_blocking=True)
        self._dt.copy_(self._host_in[1], non_blocking=True)
        self._graph.replay()
        for host, device in zip(self._host, self._out, strict=True):
            host.copy_(device, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return Signal(self._host[0].clone(), self._host[1].clone())

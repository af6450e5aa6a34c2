"""One training step: forward, backward, gradient clipping, AdamW and the
learning-rate schedule for one batch, run eagerly or replayed as one CUDA graph.

Replaying the whole step takes the Python host out of the loop. Compiled with
``reduce-overhead`` (graphs of the forward and of the backward), a step of the
ANCHORS model (L = 4096) still took the host 3-5 ms to issue against 5.5 ms
on the H100 (docs/results.md), and with the batch split over two GPUs the
GPU's share halves while the host's does not. Captured whole, a step costs
the host 0.1 ms.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import ma_features

from .config import GRAPHED_COMPILE_MODES

# Eager steps before the capture. DistributedDataParallel's backward can be
# captured only after 11 eager iterations (its buckets are rebuilt after the
# first, its logging settles by the tenth); one process keeps the same count
# so that one and W processes take the same steps.
EAGER_STEPS = 11


def label_weights(labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Each label's weight, shaped like ``labels [..., H]``: its horizon's and
    class's entry of ``class_weights [H, 3]`` (1 when None), 0 where undefined."""
    defined = labels != ma_features.IGNORE_INDEX
    if class_weights is None:
        return defined.float()
    horizon = torch.arange(labels.shape[-1], device=labels.device).expand_as(labels)
    return class_weights[horizon, labels.clamp_min(0)] * defined


def loss_terms(logits, reg, labels, target, valid,
               class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of cross-entropy (over defined labels) and of squared error (over
    defined targets), in float32. ``class_weights [H, 3]`` weighs each
    label's cross-entropy by its horizon and class (None: all 1)."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(),
                         ignore_index=ma_features.IGNORE_INDEX, reduction="none")
    if class_weights is not None:
        ce = ce * label_weights(labels, class_weights).flatten()
    se = ((reg.float() - target).square() * valid).sum()
    return ce.sum(), se


def training_loss(model, batch, regression_weight: float, autocast: bool,
                  class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Sums divided by the batch's positions x horizons, a constant, so that
    averaging over processes equals the loss of their union."""
    x, dt, labels, target, valid = batch
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits, reg = model(x, dt)
    ce, se = loss_terms(logits, reg, labels, target, valid, class_weights)
    return (ce + regression_weight * se) / labels.numel()


def compiled(net: torch.nn.Module, compile: bool | str) -> torch.nn.Module:
    """``net`` through ``torch.compile`` unless ``compile`` is False (True:
    the default mode; a string: that mode). One graph per input shape, and
    training batches all have one: the elementwise work around the matmuls
    and the attention (norms, rotary encoding, SwiGLU, casts) fuses, and
    ``reduce-overhead`` replays each step's kernels as CUDA graphs."""
    if compile is False:
        return net
    # Static shapes: a graph per shape (FlexAttention's kernels fail to lower with symbolic L).
    return torch.compile(net, mode="default" if compile is True else compile, dynamic=False)


def to_device(batch, device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


class TrainStep:
    """``step(batch)`` trains ``model`` on one batch (tensors on any device)
    and returns its loss, detached, on the device, without waiting for it.

    With a process group (torchrun) the model runs as DistributedDataParallel;
    ``compile`` is as in :func:`compiled`; ``class_weights`` as in
    :func:`loss_terms`. ``cuda_graph=True`` (CUDA only)
    runs the first :data:`EAGER_STEPS` steps eagerly on a side stream,
    captures the next as one CUDA graph and replays it for every later batch,
    copied into the captured inputs (so every batch must have the captured
    one's shapes; another raises ValueError). The
    optimizer must then be built with ``capturable=True`` and each group's
    ``lr`` a tensor on the device, which the scheduler updates in place.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                 device: torch.device, regression_weight: float, grad_clip: float | None = None,
                 compile: bool | str = False, cuda_graph: bool = False,
                 autocast: bool = True, class_weights: torch.Tensor | None = None) -> None:
        self.optimizer, self.scheduler, self.device = optimizer, scheduler, device
        self.regression_weight, self.grad_clip = regression_weight, grad_clip
        self.class_weights = None if class_weights is None else class_weights.to(device)
        self.autocast = autocast and device.type == "cuda"
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.cuda_graph, self.steps, self.graph = cuda_graph, 0, None
        self.stream = None
        if cuda_graph:
            _check_capturable(optimizer, device, compile)
            self.stream = torch.cuda.Stream(device)  # the eager steps' and the capture's
        if dist.is_initialized():
            # DDP's backward is capturable when DDP is built on the capturing stream.
            with torch.cuda.stream(self.stream) if self.stream else nullcontext():
                model = DistributedDataParallel(model)
        self.net = compiled(model, compile)

    def __call__(self, batch) -> torch.Tensor:
        if self.graph is not None:
            for captured, t in zip(self.inputs, batch, strict=True):
                if t.shape != captured.shape:
                    raise ValueError(f"the captured step takes batches shaped like the one it "
                                     f"captured: {captured.shape}, got {t.shape}")
                captured.copy_(t, non_blocking=True)
            self.graph.replay()
            loss = self.loss.clone()  # the captured loss is overwritten by the next replay
        elif not self.cuda_graph:
            loss = self._step(to_device(batch, self.device))
        elif self.steps < EAGER_STEPS:
            loss = self._on_side_stream(batch)
        else:
            loss = self._capture(batch)
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return loss

    def _step(self, batch) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # reduce-overhead: a new step's graphs
        loss = training_loss(self.net, batch, self.regression_weight, self.autocast,
                             self.class_weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def _on_side_stream(self, batch) -> torch.Tensor:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            loss = self._step(to_device(batch, self.device))
        current.wait_stream(self.stream)
        loss.record_stream(current)  # read there after this call; not to be reused before
        return loss

    def _capture(self, batch) -> torch.Tensor:
        self.inputs = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)  # gradients from the graph's own memory
        graph = torch.cuda.CUDAGraph()
        # thread_local: the DataLoader's pinning thread may call CUDA meanwhile.
        with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            self.loss = self._step(self.inputs)
        self.graph = graph  # only once captured: a failed capture leaves no graph to replay
        self.graph.replay()  # capturing ran nothing: this is the step
        return self.loss.clone()


def _check_capturable(optimizer: torch.optim.Optimizer, device: torch.device,
                      compile: bool | str) -> None:
    if device.type != "cuda":
        raise ValueError(f"cuda_graph needs a CUDA device, got {device}")
    if compile in GRAPHED_COMPILE_MODES:
        raise ValueError(f"cuda_graph captures the whole step, so compile mode {compile!r} "
                         "(which replays graphs of its own) cannot run inside it; use "
                         "compile=True (the default mode) or 'max-autotune-no-cudagraphs'")
    for group in optimizer.param_groups:
        lr = group["lr"]
        on_device = (isinstance(lr, torch.Tensor) and lr.device.type == device.type
                     and device.index in (None, lr.device.index))
        if not group.get("capturable") or not on_device:
            raise ValueError("cuda_graph needs an optimizer built with capturable=True and "
                             f"each group's lr a tensor on {device} (the replayed step reads "
                             "it there); got capturable="
                             f"{group.get('capturable')}, lr={lr!r}")


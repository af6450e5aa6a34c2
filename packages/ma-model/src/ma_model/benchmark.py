"""The training-step benchmark: ``benchmark_steps`` times the steps
:func:`ma_model.train.fit` runs, on a random batch of any length, for each
attention kind (tools/device/ drives it on GPUs). Kept out of the training
path: training never imports it."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from .config import ATTENTION_KINDS, Config
from .distributed import global_batch_losses, setup
from .fit import make_train_step, model_config
from .model import MATransformer
from .optim import adamw
from .step import EAGER_STEPS, to_device


def benchmark_steps(cfg: Config, attention: str = "ma", steps: int = 10, *, batch: int = 16,
                    length: int = 4096, device: str = "cuda", warmup: int = 3,
                    bf16: bool = True, compile: bool | str = False,
                    cuda_graph: bool = False) -> dict:
    """Times ``steps`` training steps (:class:`~ma_model.step.TrainStep`:
    forward, backward, clipping, AdamW at ``cfg.train``'s learning rate) of
    the model of ``cfg`` with ``attention`` in ``ATTENTION_KINDS``, after
    ``warmup`` untimed ones, on one random global batch of ``batch`` sequences
    of ``length`` ticks; bf16 autocast on CUDA unless ``bf16=False``; the
    model through ``torch.compile`` as ``train.compile`` says (warm-up steps
    compile it); with ``cuda_graph``, each step replayed as one CUDA graph
    (the warm-up then lasts at least until the capture).
    ``ms_per_step`` is the median step: device time between CUDA events on a
    GPU (a stray slow step, a host hiccup, does not move it), wall time on a CPU.
    ``host_ms_per_step`` is the median host time to issue a step: on a GPU,
    where the host runs ahead, a step whose host time reaches its device time
    is paced by the host.

    Under torchrun each of the W processes takes its 1/W of the same global
    batch (DistributedDataParallel: nccl on GPUs, gloo on CPUs), so any W
    computes the same steps. ``losses`` holds the global batch's loss at every
    step, warm-up included; the throughput counts the global batch.
    """
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
    rank, world, device = setup(device)
    if batch % world:
        raise ValueError(f"batch {batch} must be divisible by the {world} processes")
    torch.manual_seed(0)  # the same initial weights in every process
    model = MATransformer(replace(model_config(cfg), attention=attention)).to(device)
    train = replace(cfg.train, compile=compile, cuda_graph=cuda_graph)
    step = make_train_step(model, adamw(model, train, device), None, train, device, autocast=bf16)
    k = len(cfg.data.horizons)
    g = torch.Generator(device="cpu").manual_seed(0)
    global_batch = [
        torch.randn(batch, length, len(cfg.data.features.names), generator=g),
        torch.rand(batch, length, generator=g),
        torch.randint(0, 3, (batch, length, k), generator=g),
        torch.randn(batch, length, k, generator=g),
        torch.ones(batch, length, k, dtype=torch.bool),
    ]
    share = batch // world
    batch_data = to_device([t[rank * share:(rank + 1) * share] for t in global_batch], device)
    losses = []

    def one_step():
        losses.append(step(batch_data))

    for _ in range(max(warmup, EAGER_STEPS + 1) if cuda_graph else warmup):
        one_step()
    host_ms = []
    if device.type == "cuda":  # device time of each step, no sync between steps
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(steps)]
        for start, end in events:
            host_start = time.perf_counter()
            start.record()
            one_step()
            end.record()
            host_ms.append((time.perf_counter() - host_start) * 1e3)
        torch.cuda.synchronize()
        step_ms = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(steps):
            start = time.perf_counter()
            one_step()
            host_ms.append((time.perf_counter() - start) * 1e3)
        step_ms = host_ms
    ms = statistics.median(step_ms)
    step_losses = global_batch_losses(torch.stack(losses).double(), world)
    return {"attention": attention, "batch": batch, "length": length, "steps": steps,
            "processes": world, "bf16": bf16 and device.type == "cuda", "compile": compile,
            "cuda_graph": cuda_graph,
            "ms_per_step": ms, "host_ms_per_step": statistics.median(host_ms),
            "ticks_per_s": batch * length / (ms / 1e3), "losses": step_losses.tolist()}

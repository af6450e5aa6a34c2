"""Where training runs: the device, and the process group under torchrun
(DistributedDataParallel; gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

import ma_kernels


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device``: ``auto`` takes CUDA only where torch and ma_kernels both can."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() and ma_kernels.cuda_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but torch sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_name: str) -> tuple[int, int, torch.device]:
    """rank, world size and this process's device; initialises the process
    group under torchrun: nccl when training on GPUs, gloo on CPUs (whatever
    else the machine has)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def global_batch_losses(losses: torch.Tensor, world: int) -> torch.Tensor:
    """Each process's losses are its share's; their mean is the global batch's."""
    if world > 1:
        dist.all_reduce(losses)
        losses /= world
    return losses

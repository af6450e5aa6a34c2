"""The optimiser and its schedule: AdamW, linear warmup then cosine decay."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(model: torch.nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW without weight decay on gains and biases; fused on CUDA. With
    ``train.cuda_graph`` it is capturable and each group's lr is a tensor on
    the device, which the schedule fills in place, from a float base (so
    that it computes on the host and never reads the device)."""
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2],
               "weight_decay": train.weight_decay},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    for group in groups:
        group["initial_lr"] = train.learning_rate
        if train.cuda_graph:
            group["lr"] = torch.tensor(train.learning_rate, device=device)
    return torch.optim.AdamW(groups, lr=train.learning_rate, fused=device.type == "cuda",
                             capturable=train.cuda_graph)

"""Inputs shared by the benchmarks: a random level-1 book on a tick grid."""

import torch

import ma_kernels


def random_book(n: int, device: str = "cpu", seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mid = 10_000 + torch.randint(-1, 2, (n,), generator=g).cumsum(0)
    bid = (mid - 1) * 0.01
    ask = (mid + 1) * 0.01
    sizes = torch.randint(1, 500, (n, 2), generator=g).double()
    return torch.stack([bid, sizes[:, 0], ask, sizes[:, 1]], 1).float().to(device)


def require_gpu() -> None:
    """asv skips a benchmark whose setup raises NotImplementedError."""
    if not (torch.cuda.is_available() and ma_kernels.cuda_available()):
        raise NotImplementedError("no CUDA device")

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


def random_table(n: int, device: str = "cpu", seed: int = 0) -> torch.Tensor:
    """``[n, 6]`` book plus trades (bid, bid size, ask, ask size, trade price, size): one row
    in ten trades at the bid or the ask, the others have price and size 0."""
    g = torch.Generator().manual_seed(seed + 1)
    book = random_book(n, seed=seed)
    trade = torch.rand(n, generator=g) < 0.1
    at_ask = torch.rand(n, generator=g) < 0.5
    price = torch.where(trade, torch.where(at_ask, book[:, 2], book[:, 0]), 0.0)
    size = torch.where(trade, torch.randint(1, 300, (n,), generator=g).float(), 0.0)
    return torch.cat([book, price[:, None], size[:, None]], 1).to(device)


def random_series(n: int, levels: int = 5, device: str = "cpu", seed: int = 0) -> dict:
    """The inputs of ma_kernels.book_features: random_table's best quotes and
    trades under a ``levels``-deep book one tick apart, float64, times 1-100 us apart."""
    g = torch.Generator().manual_seed(seed + 2)
    table = random_table(n, seed=seed).double()
    depth = torch.arange(levels, dtype=torch.float64) * 0.01
    sizes = torch.randint(1, 500, (2, n, levels), generator=g).double()
    side = torch.randint(0, 2, (n,), generator=g, dtype=torch.int8) * 2 - 1
    series = {
        "time": torch.randint(1_000, 100_000, (n,), generator=g).cumsum(0),
        "bid_price": table[:, :1] - depth, "bid_size": sizes[0],
        "ask_price": table[:, 2:3] + depth, "ask_size": sizes[1],
        "trade_price": table[:, 4], "trade_size": table[:, 5],
        "trade_side": torch.where(table[:, 5] > 0, side, 0).to(torch.int8),
    }
    return {k: v.to(device) for k, v in series.items()}

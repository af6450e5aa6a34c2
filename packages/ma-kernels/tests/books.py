"""Random level-1 books for kernel tests: a random-walk mid on a tick grid,
spreads of 1-3 ticks, sizes that are sometimes zero, and repeated quotes, so
every branch of OFI (price up, down, unchanged) is hit."""

import torch


def random_book(n: int, *, dtype=torch.float32, device="cpu", seed=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    tick = 0.01
    mid_ticks = 10_000 + torch.randint(-1, 2, (n,), generator=g).cumsum(0)
    half = torch.randint(1, 4, (n,), generator=g)
    bid = (mid_ticks - half // 2 - half % 2) * tick
    ask = (mid_ticks + half // 2) * tick
    sizes = torch.randint(0, 500, (n, 2), generator=g).to(torch.float64)
    sizes[torch.rand(n, generator=g) < 0.02] = 0.0  # both sides empty now and then
    book = torch.stack([bid, sizes[:, 0], ask, sizes[:, 1]], dim=1)
    return book.to(dtype=dtype, device=device)


def random_table(n: int, *, dtype=torch.float32, device="cpu", seed=None) -> torch.Tensor:
    """``[n, 6]`` book plus trades (bid, bid size, ask, ask size, trade price, size): about one
    row in ten trades, near the touch, and long stretches without a trade."""
    seed = seed if seed is not None else torch.seed() % 2**31
    g = torch.Generator().manual_seed(seed + 1)
    book = random_book(n, dtype=torch.float64, seed=seed)
    trade = torch.rand(n, generator=g) < 0.1
    trade &= (torch.arange(n) // 1000) % 3 != 2  # every third block of 1000 rows has none
    price = torch.where(trade, book[:, 0] + 0.01 * torch.randint(0, 3, (n,), generator=g), 0.0)
    size = torch.where(trade, torch.randint(1, 300, (n,), generator=g).double(), 0.0)
    table = torch.cat([book, price[:, None], size[:, None]], dim=1)
    return table.to(dtype=dtype, device=device)


def random_series(n: int, levels: int = 4, *, dtype=torch.float64, device="cpu", seed=None):
    """The inputs of ma_kernels.book_features as a dict: a ``levels``-deep book
    around random_book's best quotes whose deeper levels are sometimes empty
    (NaN price, size 0), random_table's trades with an aggressor side, and
    times with gaps of 0 to 3 ns (ties included)."""
    seed = seed if seed is not None else torch.seed() % 2**31
    g = torch.Generator().manual_seed(seed + 2)
    table = random_table(n, dtype=torch.float64, seed=seed)
    depth = torch.arange(levels, dtype=torch.float64) * 0.01
    bid_price = table[:, :1] - depth
    ask_price = table[:, 2:3] + depth
    sizes = torch.randint(1, 500, (2, n, levels), generator=g).double()
    sizes[:, :, 0] = table[:, [1, 3]].T
    empty = torch.rand(2, n, levels, generator=g) < 0.1
    empty[:, :, 0] = False
    empty = empty.cummax(2).values  # a level is empty when any better one is
    sizes[empty] = 0.0
    bid_price = bid_price.masked_fill(empty[0], torch.nan)
    ask_price = ask_price.masked_fill(empty[1], torch.nan)
    side = torch.randint(0, 2, (n,), generator=g, dtype=torch.int8) * 2 - 1
    series = {
        "time": torch.randint(0, 4, (n,), generator=g).cumsum(0),
        "bid_price": bid_price, "bid_size": sizes[0], "ask_price": ask_price,
        "ask_size": sizes[1], "trade_price": table[:, 4], "trade_size": table[:, 5],
        "trade_side": torch.where(table[:, 5] > 0, side, 0).to(torch.int8),
    }
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
            for k, v in series.items()}

"""Level-1 features: the fused ma_kernels op against pandas and torch eager
computing the same columns, on the CPU and (where there is one) the GPU."""

import pandas as pd
import torch

import ma_kernels

from .common import random_book, require_gpu


def pandas_l1_features(frame: pd.DataFrame) -> pd.DataFrame:
    bid, bid_size, ask, ask_size = (frame[c] for c in ma_kernels.BOOK_COLUMNS)
    depth = bid_size + ask_size
    prev = frame.shift(1)
    bid_flow = (bid >= prev.bid_price) * bid_size - (bid <= prev.bid_price) * prev.bid_size
    ask_flow = (ask <= prev.ask_price) * ask_size - (ask >= prev.ask_price) * prev.ask_size
    return pd.DataFrame(
        {
            "spread": ask - bid,
            "mid": (ask + bid) / 2,
            "microprice": (bid * ask_size + ask * bid_size) / depth,
            "imbalance": (bid_size - ask_size) / depth,
            "ofi": (bid_flow - ask_flow).fillna(0.0),
        }
    )


def torch_l1_features(book: torch.Tensor) -> torch.Tensor:
    bid, bid_size, ask, ask_size = book.unbind(1)
    depth = bid_size + ask_size
    ofi = torch.zeros_like(bid)
    pb, pbs, pa, pas = book[:-1].unbind(1)
    b, bs, a, as_ = book[1:].unbind(1)
    ofi[1:] = ((b >= pb) * bs - (b <= pb) * pbs) - ((a <= pa) * as_ - (a >= pa) * pas)
    return torch.stack(
        [
            ask - bid,
            (ask + bid) / 2,
            (bid * ask_size + ask * bid_size) / depth,
            (bid_size - ask_size) / depth,
            ofi,
        ],
        1,
    )


class L1FeaturesCPU:
    params = [1_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        self.book = random_book(n)
        self.frame = pd.DataFrame(self.book.double().numpy(), columns=list(ma_kernels.BOOK_COLUMNS))

    def time_ma_kernels(self, n):
        ma_kernels.l1_features(self.book)

    def time_torch_eager(self, n):
        torch_l1_features(self.book)

    def time_pandas(self, n):
        pandas_l1_features(self.frame)


class L1FeaturesGPU:
    params = [50_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        require_gpu()
        self.book = random_book(n, device="cuda")

    def time_ma_kernels(self, n):
        ma_kernels.l1_features(self.book)
        torch.cuda.synchronize()

    def time_torch_eager(self, n):
        torch_l1_features(self.book)
        torch.cuda.synchronize()

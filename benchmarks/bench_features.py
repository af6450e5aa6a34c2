"""Microstructure features: ma_kernels.book_features against pandas and torch
eager computing the same columns, on the CPU and (where there is one) the GPU:
the model's level-1 inputs alone and with windows (against both peers), and
a 5-level spec with event and time windows (against torch eager). The GPU
script tools/device/bench_features.py also times the ANCHORS.md set."""

import numpy as np
import pandas as pd
import torch

import ma_kernels

from .common import random_series, require_gpu

WINDOW = 100


# Specs as ma_kernels.book_features arguments. BOOK_SPEC: 5 levels, two event
# and two time windows, every instant and rolling column.
BOOK_SPEC = {"depth_imbalance": (1, 5), "ofi_levels": 5, "windows": (10, 100),
             "time_windows": (1_000_000, 100_000_000)}
# The inputs the model trains on by default (ma_features.FeatureSpec.model_inputs(),
# with the inter-arrival time the model takes as dt), level 1.
MODEL_SPEC = {"instant": ("spread", "mid_change", "microprice_offset", "imbalance", "ofi",
                          "log_depth", "inter_arrival"), "rolling": (), "windows": ()}
# The same with every rolling column over two event and two time windows.
WINDOWS_SPEC = {**MODEL_SPEC, "rolling": ma_kernels.BOOK_ROLLING_FEATURES,
                "windows": (10, 100), "time_windows": (1_000_000, 100_000_000)}
# The ANCHORS.md set through book_features.
ANCHORS_SPEC = {"instant": ("spread", "mid", "microprice", "imbalance", "ofi"),
                "rolling": ("ofi", "vwap", "realized_variance"), "windows": (WINDOW,)}


def _previous(x: torch.Tensor) -> torch.Tensor:
    """Each row's predecessor; row 0 is its own (so differences there are 0)."""
    return torch.cat([x[:1], x[:-1]])


def torch_book_features(s: dict, spec: dict = BOOK_SPEC) -> torch.Tensor:
    """The peer of ma_kernels.book_features in torch eager, float64 (as the
    ticks are), computing only the spec's columns: window sums as differences
    of one float64 prefix sum, time windows through searchsorted. Float32 out."""
    spec = {"instant": ma_kernels.BOOK_INSTANT_FEATURES, "depth_imbalance": (), "ofi_levels": 0,
            "rolling": ma_kernels.BOOK_ROLLING_FEATURES, "windows": (100,), "time_windows": (),
            **spec}
    bp, bs, ap, as_ = s["bid_price"], s["bid_size"], s["ask_price"], s["ask_size"]
    size, price = s["trade_size"], s["trade_price"]
    bid, ask, bid_size, ask_size = bp[:, 0], ap[:, 0], bs[:, 0], as_[:, 0]
    mid = (bid + ask) / 2
    depth = bid_size + ask_size
    levels = max(spec["ofi_levels"], 1)
    b, a = bp[:, :levels].nan_to_num(nan=-torch.inf), ap[:, :levels].nan_to_num(nan=torch.inf)
    ofi = torch.zeros_like(bs[:, :levels])
    ofi[1:] = ((b[1:] >= b[:-1]) * bs[1:, :levels] - (b[1:] <= b[:-1]) * bs[:-1, :levels]) - (
        (a[1:] <= a[:-1]) * as_[1:, :levels] - (a[1:] >= a[:-1]) * as_[:-1, :levels])
    returns = torch.zeros_like(mid)
    returns[1:] = torch.log(mid[1:] / mid[:-1])
    signed = s["trade_side"].double() * size
    instant = {
        "spread": lambda: ask - bid,
        "mid": lambda: mid,
        "microprice": lambda: (bid * ask_size + ask * bid_size) / depth,
        "imbalance": lambda: (bid_size - ask_size) / depth,
        "ofi": lambda: ofi[:, 0],
        "log_return": lambda: returns,
        "signed_volume": lambda: signed,
        "inter_arrival": lambda: (s["time"] - _previous(s["time"])).double() * 1e-9,
        "mid_change": lambda: mid - _previous(mid),
        "microprice_offset": lambda: (ask - bid) * (bid_size - ask_size) / (2 * depth),
        "log_depth": lambda: torch.log1p(depth),
    }
    columns = [instant[name]() for name in spec["instant"]]
    for k in spec["depth_imbalance"]:
        bids, asks = bs[:, :k].sum(1), as_[:, :k].sum(1)
        columns.append((bids - asks) / (bids + asks))
    if spec["ofi_levels"]:
        columns += [*ofi.unbind(1), ofi.sum(1)]
    if spec["rolling"] and (spec["windows"] or spec["time_windows"]):
        terms = torch.stack([ofi[:, 0], signed, price * size, size, (size > 0).double(),
                             returns**2])
        prefix = torch.nn.functional.pad(terms.cumsum(1), (1, 0))
        rows = torch.arange(1, len(mid) + 1, device=mid.device)
        starts = [(rows - w).clamp_min(0) for w in spec["windows"]]
        starts += [torch.searchsorted(s["time"], s["time"] - tau, right=True)
                   for tau in spec["time_windows"]]
        for start in starts:
            ofi_sum, signed_sum, notional, volume, trades, squares = (
                prefix[:, 1:] - prefix.index_select(1, start))
            rolling = {"ofi": ofi_sum, "signed_volume": signed_sum,
                       "vwap": torch.where(trades > 0, notional / volume, mid),
                       "realized_variance": squares.clamp_min(0)}
            columns += [rolling[name] for name in spec["rolling"]]
    return torch.stack(columns, 1).float()


def book_frame(series: dict) -> pd.DataFrame:
    """A level-1 random_series as a pandas user holds ticks: one column per
    field (best quote, trade, int64 ns time), the index a plain range."""
    return pd.DataFrame({k: (v[:, 0] if v.ndim == 2 else v).numpy() for k, v in series.items()})


ROLLING_NAMES = {"ofi": "ofi_sum", "signed_volume": "signed_volume_sum", "vwap": "vwap",
                 "realized_variance": "realized_variance"}


def pandas_book_features(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The peer of ma_kernels.book_features in pandas for level-1 specs, as a
    competent pandas user writes it: vectorised columns, only the spec's,
    ``rolling(W, min_periods=1)`` for event windows and offset windows on a
    DatetimeIndex for time windows ((t - tau, t], the op's rows)."""
    spec = {"instant": ma_kernels.BOOK_INSTANT_FEATURES,
            "rolling": ma_kernels.BOOK_ROLLING_FEATURES, "windows": (100,), "time_windows": (),
            **spec}
    if spec.get("depth_imbalance") or spec.get("ofi_levels"):
        raise ValueError("pandas_book_features computes level-1 columns only")
    quote = ["bid_price", "bid_size", "ask_price", "ask_size"]
    bid, bid_size, ask, ask_size = (frame[c] for c in quote)
    price, size = frame["trade_price"], frame["trade_size"]
    prev = frame[quote].shift(1)
    bid_flow = (bid >= prev.bid_price) * bid_size - (bid <= prev.bid_price) * prev.bid_size
    ask_flow = (ask <= prev.ask_price) * ask_size - (ask >= prev.ask_price) * prev.ask_size
    ofi = (bid_flow - ask_flow).fillna(0.0)
    mid = (ask + bid) / 2
    depth = bid_size + ask_size
    has_depth = depth > 0

    def returns() -> pd.Series:
        return np.log(mid).diff().fillna(0.0)

    def signed() -> pd.Series:
        return frame["trade_side"] * size

    instant = {
        "spread": lambda: ask - bid,
        "mid": lambda: mid,
        "microprice": lambda: ((bid * ask_size + ask * bid_size) / depth).where(has_depth, mid),
        "imbalance": lambda: ((bid_size - ask_size) / depth).where(has_depth, 0.0),
        "ofi": lambda: ofi,
        "log_return": returns,
        "signed_volume": signed,
        "inter_arrival": lambda: frame["time"].diff().fillna(0.0) * 1e-9,
        "mid_change": lambda: mid.diff().fillna(0.0),
        "microprice_offset": lambda: ((ask - bid) * (bid_size - ask_size) / (2 * depth))
        .where(has_depth, 0.0),
        "log_depth": lambda: np.log1p(depth),
    }
    columns = {name: instant[name]() for name in spec["instant"]}
    if spec["rolling"] and (spec["windows"] or spec["time_windows"]):
        terms = pd.DataFrame({"ofi": ofi, "signed": signed(), "notional": price * size,
                              "volume": size, "trades": (size > 0).astype(np.float64),
                              "squares": returns() ** 2})
        sums = {str(w): terms.rolling(w, min_periods=1).sum() for w in spec["windows"]}
        timed = terms.set_axis(pd.DatetimeIndex(frame["time"].to_numpy().view("M8[ns]")))
        sums.update({f"{tau}ns": timed.rolling(pd.Timedelta(tau, "ns")).sum().set_axis(frame.index)
                     for tau in spec["time_windows"]})
        for suffix, s in sums.items():
            rolling = {"ofi": s.ofi, "signed_volume": s.signed,
                       "vwap": (s.notional / s.volume).where(s.trades > 0, mid),
                       "realized_variance": s.squares.clip(lower=0.0)}
            columns.update({f"{ROLLING_NAMES[name]}_{suffix}": rolling[name]
                            for name in spec["rolling"]})
    return pd.DataFrame(columns)


def check_peers(series: dict, spec: dict, rows: int = 20_000) -> None:
    """Raise unless pandas and torch eager give the float64 op's columns on the
    first ``rows`` ticks (error relative to each column's largest value <= 1e-6,
    as the op's float32 output is tested), so a wrong peer is never timed."""
    head = {k: v[:rows] for k, v in series.items()}
    ref = ma_kernels.book_features(**head, **spec, dtype=torch.float64)
    frame = pandas_book_features(book_frame(head), spec)
    peers = {"pandas": torch.from_numpy(frame.to_numpy(copy=True)),
             "torch eager": torch_book_features(head, spec)}
    for name, out in peers.items():
        if out.shape != ref.shape:
            raise AssertionError(f"{name}: shape {tuple(out.shape)}, the op's {tuple(ref.shape)}")
        scale = ref.abs().amax(0).clamp_min(1e-300)
        err = ((out.double() - ref).abs() / (ref.abs() + scale)).amax(0)
        if not (err <= 1e-6).all():
            raise AssertionError(f"{name} differs from ma_kernels.book_features: {err.tolist()}")


class BookFeaturesCPU:
    """BOOK_SPEC on the CPU: ma_kernels.book_features (all cores) against torch eager."""

    params = [1_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        self.series = random_series(n)
        ma_kernels.book_features(**random_series(16), **BOOK_SPEC)

    def time_ma_kernels(self, n):
        ma_kernels.book_features(**self.series, **BOOK_SPEC, dtype=torch.float32)

    def time_torch_eager(self, n):
        torch_book_features(self.series)


class BookFeaturesGPU:
    params = [10_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        require_gpu()
        self.series = random_series(n, device="cuda")
        ma_kernels.book_features(**random_series(16, device="cuda"), **BOOK_SPEC)

    def time_ma_kernels(self, n):
        ma_kernels.book_features(**self.series, **BOOK_SPEC, dtype=torch.float32)
        torch.cuda.synchronize()

    def time_torch_eager(self, n):
        torch_book_features(self.series)
        torch.cuda.synchronize()


class _BookSpecCPU:
    """A level-1 spec at 5 million ticks on the CPU: ma_kernels.book_features
    (all cores, float32 out) against pandas and torch eager (float64), once
    setup has checked that both peers compute the op's columns."""

    params = [5_000_000]
    param_names = ["ticks"]
    spec: dict

    def setup(self, n):
        self.series = random_series(n, levels=1)
        self.frame = book_frame(self.series)
        check_peers(self.series, self.spec)  # also pays the op's first-call dispatch setup

    def time_ma_kernels(self, n):
        ma_kernels.book_features(**self.series, **self.spec, dtype=torch.float32)

    def time_pandas(self, n):
        pandas_book_features(self.frame, self.spec)

    def time_torch_eager(self, n):
        torch_book_features(self.series, self.spec)


class ModelInputsCPU(_BookSpecCPU):
    """MODEL_SPEC: the model's 7 per-event inputs."""

    spec = MODEL_SPEC


class ModelInputsWindowsCPU(_BookSpecCPU):
    """WINDOWS_SPEC: the 7 inputs and 16 rolling columns (windows of 10 and 100
    events, 1 and 100 ms)."""

    spec = WINDOWS_SPEC

"""Microstructure features: the fused ma_kernels ops against pandas and torch
eager computing the same columns, on the CPU and (where there is one) the GPU:
the level-1 set, the ANCHORS.md set (level 1 plus rolling OFI, trade VWAP
and realized variance over 100 events), a 5-level spec with event and time
windows (ma_kernels.book_features against torch eager), and the model's
level-1 inputs alone and with windows (book_features against both peers)."""

import numpy as np
import pandas as pd
import torch

import ma_kernels

from .common import random_book, random_series, random_table, require_gpu

WINDOW = 100


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
    """The level-1 set in torch eager, written for speed: contiguous columns,
    the previous quote as a shifted copy (row 0 is its own, so its OFI is 0)."""
    bid, bid_size, ask, ask_size = book.T.contiguous()
    pb, pbs, pa, pas = (torch.cat([c[:1], c[:-1]]) for c in (bid, bid_size, ask, ask_size))
    zero = bid.new_zeros(())
    ofi = (torch.where(bid >= pb, bid_size, zero) - torch.where(bid <= pb, pbs, zero)
           - torch.where(ask <= pa, ask_size, zero) + torch.where(ask >= pa, pas, zero))
    depth = bid_size + ask_size
    return torch.stack(
        [ask - bid, (ask + bid) / 2, (bid * ask_size + ask * bid_size) / depth,
         (bid_size - ask_size) / depth, ofi], 1)


def pandas_microstructure_features(frame: pd.DataFrame, window: int = WINDOW) -> pd.DataFrame:
    features = pandas_l1_features(frame[list(ma_kernels.BOOK_COLUMNS)])
    price, size = frame["trade_price"], frame["trade_size"]

    def rolling(x: pd.Series) -> pd.Series:
        return x.rolling(window, min_periods=1).sum()

    trades = rolling((size > 0).astype(np.float64))
    vwap = (rolling(price * size) / rolling(size)).where(trades > 0, features["mid"])
    squared = np.log(features["mid"]).diff().fillna(0.0) ** 2
    return features.assign(
        rolling_ofi=rolling(features["ofi"]),
        rolling_vwap=vwap,
        rolling_realized_variance=rolling(squared).clip(lower=0.0),
    )


def rolling_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sums of the last ``window`` values of a 1-D tensor: a difference of
    its prefix sums."""
    prefix = x.contiguous().cumsum(0)
    out = prefix.clone()
    out[window:] -= prefix[:-window]
    return out


def torch_microstructure_features(
    table: torch.Tensor, window: int = WINDOW, accumulate: torch.dtype = torch.float64
) -> torch.Tensor:
    """The peer in torch eager, written for speed: one contiguous 1-D prefix
    sum per rolling column, windows as differences of shifted slices. In
    ``accumulate``: float64 is right; float32 (faster, as one would write it
    with the table's dtype) loses the low bits of windows late in a long
    series, which the benchmarks report next to its time."""
    l1 = torch_l1_features(table[:, :4])
    bid, ask, price, size = table[:, [0, 2, 4, 5]].T.to(accumulate).contiguous()
    mid = (bid + ask) / 2
    squared = torch.zeros_like(mid)
    squared[1:] = torch.diff(torch.log(mid)) ** 2
    ofi, notional, volume, trades, squares = (
        rolling_sum(x, window)
        for x in (l1[:, 4].to(accumulate), price * size, size, (size > 0).to(accumulate), squared))
    vwap = torch.where(trades > 0.5, notional / volume, mid)
    rolling = torch.stack([ofi, vwap, squares.clamp_min(0)], 1).to(table.dtype)
    return torch.cat([l1, rolling], 1)


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
ANCHORS_SPEC = {"instant": ma_kernels.L1_FEATURES, "rolling": ("ofi", "vwap", "realized_variance"),
                "windows": (WINDOW,)}


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
    bid, bid_size, ask, ask_size = (frame[c] for c in ma_kernels.BOOK_COLUMNS)
    price, size = frame["trade_price"], frame["trade_size"]
    prev = frame[list(ma_kernels.BOOK_COLUMNS)].shift(1)
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


class L1FeaturesCPU:
    params = [1_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        self.book = random_book(n)
        self.frame = pd.DataFrame(self.book.double().numpy(), columns=list(ma_kernels.BOOK_COLUMNS))
        ma_kernels.l1_features(self.book[:16])  # the op's first call pays torch's dispatch setup

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
        ma_kernels.l1_features(self.book[:16])

    def time_ma_kernels(self, n):
        ma_kernels.l1_features(self.book)
        torch.cuda.synchronize()

    def time_torch_eager(self, n):
        torch_l1_features(self.book)
        torch.cuda.synchronize()


class MicrostructureFeaturesCPU:
    """The ANCHORS.md set on the CPU: ma_kernels (all cores) against pandas."""

    params = [5_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        self.table = random_table(n)
        columns = list(ma_kernels.MICROSTRUCTURE_INPUTS)
        self.frame = pd.DataFrame(self.table.double().numpy(), columns=columns)
        ma_kernels.microstructure_features(self.table[:16], WINDOW)

    def time_ma_kernels(self, n):
        ma_kernels.microstructure_features(self.table, WINDOW)

    def time_torch_eager(self, n):
        torch_microstructure_features(self.table)

    def time_torch_eager_float32_sums(self, n):
        torch_microstructure_features(self.table, accumulate=torch.float32)

    def time_pandas(self, n):
        pandas_microstructure_features(self.frame)


class MicrostructureFeaturesGPU:
    params = [50_000_000]
    param_names = ["ticks"]

    def setup(self, n):
        require_gpu()
        self.table = random_table(n, device="cuda")
        ma_kernels.microstructure_features(self.table[:16], WINDOW)

    def time_ma_kernels(self, n):
        ma_kernels.microstructure_features(self.table, WINDOW)
        torch.cuda.synchronize()

    def time_torch_eager(self, n):
        torch_microstructure_features(self.table)
        torch.cuda.synchronize()

    def time_torch_eager_float32_sums(self, n):
        torch_microstructure_features(self.table, accumulate=torch.float32)
        torch.cuda.synchronize()


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

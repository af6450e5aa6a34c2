"""book_features: the whole feature set of a K-level book with trades.

Per-event features, depth imbalances, per-level and multi-level order flow
imbalance, and rolling sums over event windows and time windows, in one pass
over the rows on CPU (threads) or CUDA, computed in float64 whatever the
dtype. ``ma_features.compute_features`` calls it with a ``FeatureSpec``.
Here: the public function, its argument checks and its kernels' calls; the
op itself (``ma_kernels::book_features``) is declared in ops.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _C
from ._checks import FLOAT_CODES, check_device, launch_args

BOOK_INSTANT_FEATURES = (
    "spread", "mid", "microprice", "imbalance", "ofi", "log_return", "signed_volume",
    "inter_arrival", "mid_change", "microprice_offset", "log_depth",
)
BOOK_ROLLING_FEATURES = ("ofi", "signed_volume", "vwap", "realized_variance")
BOOK_FEATURES_MAX_ENTRIES = 8  # per list: depth imbalances, event windows, time windows (csrc)

_BOOK = ("bid_price", "bid_size", "ask_price", "ask_size")


def book_features(
    time: torch.Tensor,
    bid_price: torch.Tensor,
    bid_size: torch.Tensor,
    ask_price: torch.Tensor,
    ask_size: torch.Tensor,
    trade_price: torch.Tensor,
    trade_size: torch.Tensor,
    trade_side: torch.Tensor,
    *,
    instant: Sequence[str] = BOOK_INSTANT_FEATURES,
    depth_imbalance: Sequence[int] = (),
    ofi_levels: int = 0,
    rolling: Sequence[str] = BOOK_ROLLING_FEATURES,
    windows: Sequence[int] = (100,),
    time_windows: Sequence[int] = (),
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Features of N events of a K-level book with trades.

    Args:
        time: ``[N]`` int64 event times in ns, non-decreasing.
        bid_price, bid_size, ask_price, ask_size: ``[N, K]`` float32 or float64,
            best level first; an empty level has a NaN price and size 0.
        trade_price, trade_size: ``[N]`` of the same dtype, 0 where no trade.
        trade_side: ``[N]`` int8, +1 buyer- and -1 seller-initiated, 0 none.
        instant: per-event columns among :data:`BOOK_INSTANT_FEATURES`.
        depth_imbalance: for each k, ``(sum of the best k bid sizes - same on
            the ask) / their total`` (0 on an empty book).
        ofi_levels: L > 0 adds the OFI of levels 1..L and their sum.
        rolling: window columns among :data:`BOOK_ROLLING_FEATURES` (sum of
            OFI, sum of signed volume, trade VWAP, realized variance of log mid
            returns), for each window.
        windows: event windows: rows ``t - W < j <= t``.
        time_windows: time windows in ns: rows ``j <= t`` with
            ``time[j] > time[t] - tau``.
        dtype: of the output, float32 or float64 (default: the book's). Float64
            ticks to float32 features need no float64 copy of the output.

    Returns:
        ``[N, F]`` contiguous tensor of ``dtype`` on the book's device. Columns in
        this order: ``instant``, ``depth_imbalance``, the level OFIs and their
        sum, then for each event window and then each time window the
        ``rolling`` columns.

    Policies: the first row has OFI, log return and inter-arrival time 0; a
    log return is 0 where a mid is not positive; a window without a trade has
    VWAP = the row's mid; windows at the start cover the rows that exist.
    Window sums are compensated running sums in float64. The op does not look
    for NaN best quotes, crossed books or decreasing time (ma_features
    validates ticks first); formulas in docs/features.md.
    """
    _check(time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size, trade_side)
    spec = _spec(bid_price.shape[1], instant, depth_imbalance, ofi_levels, rolling, windows,
                 time_windows)
    dtype = _check_dtype(bid_price.dtype if dtype is None else dtype)
    return torch.ops.ma_kernels.book_features(
        time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size, trade_side, *spec,
        dtype,
    )


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in FLOAT_CODES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def _names(name: str, chosen: Sequence[str], allowed: tuple[str, ...]) -> list[int]:
    if isinstance(chosen, str) or not isinstance(chosen, (tuple, list)):
        raise ValueError(f"{name} must be a sequence of names, got {chosen!r}")
    unknown = [c for c in chosen if c not in allowed]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"{name}: {unknown or list(chosen)} not distinct names among {allowed}")
    return [allowed.index(c) for c in chosen]


def _ints(name: str, values: Sequence[int], *, most: int = BOOK_FEATURES_MAX_ENTRIES) -> list[int]:
    if not isinstance(values, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 2**63 for v in values
    ):
        raise ValueError(f"{name} must be a sequence of ints >= 1, got {values!r}")
    if len(values) > most:
        raise ValueError(f"{name}: at most {most} entries, got {len(values)}")
    return list(values)


def _spec(levels, instant, depth_imbalance, ofi_levels, rolling, windows, time_windows) -> tuple:
    """The spec as codes for the kernel, or a ValueError naming what is wrong."""
    depth = _ints("depth_imbalance", depth_imbalance)
    if isinstance(ofi_levels, bool) or not isinstance(ofi_levels, int) or ofi_levels < 0:
        raise ValueError(f"ofi_levels must be an int >= 0, got {ofi_levels!r}")
    deepest = max((ofi_levels, *depth), default=0)
    if deepest > levels:
        raise ValueError(f"the features read {deepest} book levels; the book has {levels}")
    return (_names("instant", instant, BOOK_INSTANT_FEATURES), depth, ofi_levels,
            _names("rolling", rolling, BOOK_ROLLING_FEATURES), _ints("windows", windows),
            _ints("time_windows", time_windows))


def _check(time, *columns: torch.Tensor) -> None:
    names = ("time", *_BOOK, "trade_price", "trade_size", "trade_side")
    tensors = (time, *columns)
    for name, t in zip(names, tensors, strict=True):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    bid_price = columns[0]
    if bid_price.dim() != 2 or bid_price.shape[1] == 0:
        raise ValueError(f"bid_price must be [N, K] with K >= 1 levels, got shape "
                         f"{tuple(bid_price.shape)}")
    rows, levels = bid_price.shape
    dtype = bid_price.dtype
    if dtype not in FLOAT_CODES:
        raise ValueError(f"book and trade prices must be float32 or float64, got {dtype}")
    expected = {
        **{name: ((rows, levels), dtype) for name in _BOOK},
        "time": ((rows,), torch.int64),
        "trade_price": ((rows,), dtype),
        "trade_size": ((rows,), dtype),
        "trade_side": ((rows,), torch.int8),
    }
    for name, t in zip(names, tensors, strict=True):
        shape, want = expected[name]
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype != want:
            raise ValueError(f"{name} must have dtype {want}, got {t.dtype}")
        if t.device != time.device:
            raise ValueError(f"{name} is on {t.device}, time on {time.device}: one device for all")
        check_device(name, t)


def _check_codes(levels: int, spec: tuple) -> None:
    """The spec as the op receives it (codes), for calls that bypass book_features."""
    instant, depth, ofi_levels, rolling, windows, time_windows = spec
    names = ([BOOK_INSTANT_FEATURES[i] for i in instant if 0 <= i < len(BOOK_INSTANT_FEATURES)],
             [BOOK_ROLLING_FEATURES[i] for i in rolling if 0 <= i < len(BOOK_ROLLING_FEATURES)])
    if len(names[0]) != len(instant) or len(names[1]) != len(rolling):
        raise ValueError(f"feature codes out of range: instant {instant}, rolling {rolling}")
    _spec(levels, names[0], depth, ofi_levels, names[1], windows, time_windows)


def _column_count(spec) -> int:
    """The columns of a spec given as codes (BookFeatureSpec::columns in csrc)."""
    instant, depth, ofi_levels, rolling, windows, time_windows = spec
    return (len(instant) + len(depth) + (ofi_levels + 1 if ofi_levels else 0)
            + (len(windows) + len(time_windows)) * len(rolling))


def _empty(bid_price: torch.Tensor, spec, dtype: torch.dtype) -> torch.Tensor:
    return bid_price.new_empty((bid_price.shape[0], _column_count(spec)), dtype=dtype)


def _prepare(time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size, trade_side,
             *spec_and_dtype) -> tuple[torch.Tensor, tuple]:
    """The output tensor and the kernel's arguments (columns as pointer and strides)."""
    book = (bid_price, bid_size, ask_price, ask_size)
    _check(time, *book, trade_price, trade_size, trade_side)
    *spec, dtype = spec_and_dtype
    _check_codes(bid_price.shape[1], spec)
    out = _empty(bid_price, spec, _check_dtype(dtype))
    args = (*bid_price.shape, [(t.data_ptr(), t.stride(0), t.stride(1)) for t in book],
            [(t.data_ptr(), t.stride(0), 0) for t in (trade_price, trade_size, trade_side, time)],
            *spec, FLOAT_CODES[bid_price.dtype], out.data_ptr(), FLOAT_CODES[dtype])
    return out, args


def cpu_kernel(
    time: torch.Tensor, bid_price: torch.Tensor, bid_size: torch.Tensor,
    ask_price: torch.Tensor, ask_size: torch.Tensor, trade_price: torch.Tensor,
    trade_size: torch.Tensor, trade_side: torch.Tensor, instant: list[int],
    depth_imbalance: list[int], ofi_levels: int, rolling: list[int], windows: list[int],
    time_windows: list[int], dtype: torch.dtype,
) -> torch.Tensor:
    out, args = _prepare(time, bid_price, bid_size, ask_price, ask_size, trade_price, trade_size,
                         trade_side, instant, depth_imbalance, ofi_levels, rolling, windows,
                         time_windows, dtype)
    if len(out):
        _C.book_features_cpu(*args)
    return out


def cuda_kernel(*inputs) -> torch.Tensor:
    out, args = _prepare(*inputs)
    if len(out):
        scratch = out.new_empty(_C.book_features_cuda_scratch(len(out)), dtype=torch.float64)
        _C.book_features_cuda(*args, scratch.data_ptr(), *launch_args(out))
    return out


def fake(*inputs) -> torch.Tensor:
    return _empty(inputs[1], inputs[8:-1], inputs[-1])

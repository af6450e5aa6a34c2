"""The fused microstructure feature set as one torch op.

Level-1 book plus trades in, the level-1 features plus rolling sums over the
last ``window`` events out, in one pass over the data on CPU (threads) or
CUDA. Declared with ``custom_op`` and a fake, so it traces under
``torch.compile`` and captures in CUDA graphs.
"""

from __future__ import annotations

import torch

from . import _C
from ._checks import FLOAT_CODES, check_tensor, launch_args, matrix_args
from .ops import BOOK_COLUMNS, L1_FEATURES

MICROSTRUCTURE_INPUTS = (*BOOK_COLUMNS, "trade_price", "trade_size")
MICROSTRUCTURE_FEATURES = (
    *L1_FEATURES,
    "rolling_ofi",
    "rolling_vwap",
    "rolling_realized_variance",
)


def microstructure_features(table: torch.Tensor, window: int = 100) -> torch.Tensor:
    """Level-1 features and rolling window features of a book with trades.

    Args:
        table: ``[N, 6]`` float32 or float64 tensor on CPU or CUDA, columns
            :data:`MICROSTRUCTURE_INPUTS` (trade price and size 0 on rows
            without a trade). Any strides.
        window: ``W >= 1`` events in each rolling window, the current one included.

    Returns:
        ``[N, 8]`` contiguous tensor of the table's dtype and device, columns
        :data:`MICROSTRUCTURE_FEATURES`: the five of
        :func:`ma_kernels.l1_features`, then over rows ``t - W < j <= t``
        the sum of OFI, the trade VWAP ``sum(price * size) / sum(size)`` and
        the realized variance ``sum(r_j ** 2)`` of log mid returns
        ``r_j = log(mid_j / mid_{j-1})``.

    Policies: a window at the start of the series covers the rows that exist
    (``0 <= j <= t``); ``r_0 = 0``, and ``r_j = 0`` where a mid is not
    positive; a window without a trade has VWAP = the row's mid. Sums are
    accumulated in float64 whatever the dtype (formulas: docs/features.md).
    Inputs are not checked for NaN (ma_features validates ticks first).
    """
    _check(table, window)
    return torch.ops.ma_kernels.microstructure_features(table, window)


def _check(table: torch.Tensor, window: int) -> None:
    check_tensor(
        "table", table, ndim=2, shape=(None, len(MICROSTRUCTURE_INPUTS)), dtypes=FLOAT_CODES
    )
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window < 2**63:
        raise ValueError(f"window must be an int >= 1 (and below 2**63), got {window!r}")


def _empty_features(table: torch.Tensor) -> torch.Tensor:
    return table.new_empty((table.shape[0], len(MICROSTRUCTURE_FEATURES)))


@torch.library.custom_op("ma_kernels::microstructure_features", mutates_args=(), device_types="cpu")
def _microstructure_cpu(table: torch.Tensor, window: int) -> torch.Tensor:
    _check(table, window)
    out = _empty_features(table)
    _C.microstructure_features_cpu(
        *matrix_args(table), window, out.data_ptr(), FLOAT_CODES[table.dtype]
    )
    return out


@_microstructure_cpu.register_kernel("cuda")
def _microstructure_cuda(table: torch.Tensor, window: int) -> torch.Tensor:
    _check(table, window)
    out = _empty_features(table)  # contiguous and 16-byte aligned: the kernel stores vectors
    _C.microstructure_features_cuda(
        *matrix_args(table), window, out.data_ptr(), FLOAT_CODES[table.dtype], *launch_args(table)
    )
    return out


@_microstructure_cpu.register_fake
def _microstructure_fake(table: torch.Tensor, window: int) -> torch.Tensor:
    _check(table, window)
    return _empty_features(table)

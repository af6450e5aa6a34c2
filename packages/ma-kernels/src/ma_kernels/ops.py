"""The public ops, declared with torch.library.custom_op.

Each op checks its arguments (clear ValueErrors), registers a fake
implementation so it traces under torch.compile and captures in CUDA graphs,
and dispatches to the CPU or CUDA kernel of ma_kernels._C.
"""

from __future__ import annotations

import torch

from . import _C
from ._checks import FLOAT_CODES, check_tensor, launch_args, matrix_args

BOOK_COLUMNS = ("bid_price", "bid_size", "ask_price", "ask_size")
L1_FEATURES = ("spread", "mid", "microprice", "imbalance", "ofi")


def l1_features(book: torch.Tensor) -> torch.Tensor:
    """Level-1 microstructure features of a book, one row per event.

    Args:
        book: ``[N, 4]`` float32 or float64 tensor on CPU or CUDA, columns
            :data:`BOOK_COLUMNS`. Any strides (a column slice of a wider
            table works without a copy).

    Returns:
        ``[N, 5]`` tensor of the book's dtype and device, columns
        :data:`L1_FEATURES`: ``ask - bid``, ``(ask + bid) / 2``, the
        size-weighted microprice ``(bid * ask_size + ask * bid_size) /
        (bid_size + ask_size)``, the imbalance ``(bid_size - ask_size) /
        (bid_size + ask_size)`` and the order flow imbalance of Cont,
        Kukanov and Stoikov (2014) against the previous row.

    Policies: the first row's OFI is 0 (it has no previous quote); where
    ``bid_size + ask_size == 0`` the microprice is the mid and the imbalance
    is 0. The op does not look for NaN or crossed books: that is the data
    layer's job (ma_features validates ticks before they get here).
    """
    _check_book(book)
    return torch.ops.ma_kernels.l1_features(book)


def _check_book(book: torch.Tensor) -> None:
    check_tensor("book", book, ndim=2, shape=(None, len(BOOK_COLUMNS)), dtypes=FLOAT_CODES)


def _empty_features(book: torch.Tensor) -> torch.Tensor:
    return book.new_empty((book.shape[0], len(L1_FEATURES)))


@torch.library.custom_op("ma_kernels::l1_features", mutates_args=(), device_types="cpu")
def _l1_features_cpu(book: torch.Tensor) -> torch.Tensor:
    _check_book(book)
    out = _empty_features(book)
    _C.l1_features_cpu(*matrix_args(book), out.data_ptr(), FLOAT_CODES[book.dtype])
    return out


@_l1_features_cpu.register_kernel("cuda")
def _l1_features_cuda(book: torch.Tensor) -> torch.Tensor:
    _check_book(book)
    out = _empty_features(book)
    _C.l1_features_cuda(
        *matrix_args(book), out.data_ptr(), FLOAT_CODES[book.dtype], *launch_args(book)
    )
    return out


@_l1_features_cpu.register_fake
def _l1_features_fake(book: torch.Tensor) -> torch.Tensor:
    _check_book(book)
    return _empty_features(book)

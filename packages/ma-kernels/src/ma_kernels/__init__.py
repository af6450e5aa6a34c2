"""ma_kernels: the hot loops of ma-transformer as torch ops, CPU and CUDA.

Every op has a float64 twin in :mod:`ma_kernels.reference`, the oracle of the
tests. The compiled extension takes raw pointers and never links libtorch, so
one build serves any torch >= 2.4.
"""

from importlib.metadata import version as _version

from . import book_stream, reference, resident, step, stream
from ._C import cuda_device_count as _cuda_device_count
from ._C import with_cuda as _with_cuda
from .book import BOOK_FEATURES_MAX_ENTRIES, BOOK_INSTANT_FEATURES, BOOK_ROLLING_FEATURES
from .ops import (
    book_features,
    book_features_commit,
    book_features_step,
    book_tick_reasons,
    sliding_window_attention,
    stream_inputs,
    transformer_step,
)
from .resident import ResidentStream
from .simulator import LobSimulation, simulate_lob

__version__ = _version("ma-kernels")

__all__ = [
    "BOOK_FEATURES_MAX_ENTRIES",
    "BOOK_INSTANT_FEATURES",
    "BOOK_ROLLING_FEATURES",
    "LobSimulation",
    "ResidentStream",
    "__version__",
    "book_features",
    "book_features_commit",
    "book_features_step",
    "book_stream",
    "book_tick_reasons",
    "cuda_available",
    "has_cuda",
    "reference",
    "resident",
    "simulate_lob",
    "sliding_window_attention",
    "step",
    "stream",
    "stream_inputs",
    "transformer_step",
]


def has_cuda() -> bool:
    """Whether this build of ma_kernels has its CUDA kernels compiled in."""
    return _with_cuda


def cuda_available() -> bool:
    """Whether CUDA kernels are compiled in and a CUDA device can run them."""
    return _with_cuda and _cuda_device_count() > 0

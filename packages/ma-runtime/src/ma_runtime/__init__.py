"""ma_runtime: streaming inference, one tick in, one signal out."""

from .engine import (
    INPUT_LIMIT,
    REJECTIONS,
    RESIDENT_MAX_INSTRUMENTS,
    Signals,
    StreamEngine,
    auto_device,
)
from .feeds import replay
from .latency import LatencyStats, measure_latency
from .network import TickServer, check_results, send_ticks

__version__ = "0.1.0"

__all__ = [
    "INPUT_LIMIT",
    "LatencyStats",
    "REJECTIONS",
    "RESIDENT_MAX_INSTRUMENTS",
    "Signals",
    "StreamEngine",
    "TickServer",
    "__version__",
    "auto_device",
    "check_results",
    "measure_latency",
    "replay",
    "send_ticks",
]

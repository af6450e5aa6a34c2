"""ma_runtime: streaming inference, one tick in, one signal out."""

from .engine import Signal, StreamEngine
from .latency import LatencyStats, measure_latency

__version__ = "0.1.0"

__all__ = ["LatencyStats", "Signal", "StreamEngine", "__version__", "measure_latency"]

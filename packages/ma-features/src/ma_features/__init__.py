"""ma_features: tick data, readers, simulation, features and labels."""

from .features import LEVEL1_FEATURES, level1_features, level1_features_frame
from .simulator import SimulatorConfig, simulate
from .ticks import EventType, Ticks

__version__ = "0.1.0"

__all__ = [
    "LEVEL1_FEATURES",
    "EventType",
    "SimulatorConfig",
    "Ticks",
    "__version__",
    "level1_features",
    "level1_features_frame",
    "simulate",
]

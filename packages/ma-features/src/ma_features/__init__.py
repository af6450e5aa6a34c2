"""ma_features: tick data, readers, simulation, features and labels."""

from .features import LEVEL1_FEATURES, level1_features, level1_features_frame
from .io import from_frame, read_csv, read_parquet, to_frame, write_csv, write_parquet
from .lobster import lobster_sample, lobster_sample_paths, read_lobster
from .simulator import SimulatorConfig, simulate
from .ticks import EventType, Ticks
from .validation import TickDataError, ValidationReport, validate

__version__ = "0.1.0"

__all__ = [
    "LEVEL1_FEATURES",
    "EventType",
    "SimulatorConfig",
    "TickDataError",
    "Ticks",
    "ValidationReport",
    "__version__",
    "from_frame",
    "level1_features",
    "level1_features_frame",
    "lobster_sample",
    "lobster_sample_paths",
    "read_csv",
    "read_lobster",
    "read_parquet",
    "simulate",
    "to_frame",
    "validate",
    "write_csv",
    "write_parquet",
]

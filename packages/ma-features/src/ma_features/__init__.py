"""ma_features: tick data, readers, simulation, features and labels."""

from .compute import compute_features, compute_features_frame
from .io import (
    from_frame,
    read_csv,
    read_parquet,
    read_ticks,
    source_of,
    to_frame,
    write_csv,
    write_parquet,
)
from .labels import (
    DOWN,
    IGNORE_INDEX,
    NUM_CLASSES,
    STATIONARY,
    UP,
    direction_labels,
    direction_labels_from_ticks,
    imbalance_change,
    imbalance_change_from_ticks,
    smoothed_mid_change,
)
from .lobster import lobster_sample, lobster_sample_paths, read_lobster
from .masked import Masked
from .normalize import Standardizer, rolling_zscore
from .simulator import SimulatorConfig, simulate
from .spec import INSTANT_FEATURES, ROLLING_FEATURES, FeatureSpec
from .state import FeatureState
from .ticks import EventType, Ticks
from .validation import REASONS, TickDataError, ValidationReport, bad_rows, validate

__version__ = "0.1.0"

__all__ = [
    "DOWN",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "STATIONARY",
    "UP",
    "EventType",
    "FeatureSpec",
    "FeatureState",
    "INSTANT_FEATURES",
    "Masked",
    "REASONS",
    "ROLLING_FEATURES",
    "SimulatorConfig",
    "Standardizer",
    "TickDataError",
    "Ticks",
    "ValidationReport",
    "__version__",
    "bad_rows",
    "compute_features",
    "compute_features_frame",
    "direction_labels",
    "direction_labels_from_ticks",
    "from_frame",
    "imbalance_change",
    "imbalance_change_from_ticks",
    "lobster_sample",
    "lobster_sample_paths",
    "read_csv",
    "read_lobster",
    "read_parquet",
    "read_ticks",
    "rolling_zscore",
    "simulate",
    "smoothed_mid_change",
    "source_of",
    "to_frame",
    "validate",
    "write_csv",
    "write_parquet",
]

"""ma_model: the MA-Transformer, its training and evaluation."""

from .baselines import logistic_regression
from .benchmark import benchmark_steps
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    ATTENTION_KINDS,
    COMPILE_MODES,
    Config,
    DataConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from .data import (
    Splits,
    TickArrays,
    WindowDataset,
    load_splits,
    load_ticks,
    prepare,
    split_ranges,
    tick_arrays,
)
from .evaluate import evaluate_checkpoint, evaluate_runs, walk_forward_runs
from .fit import fit, model_config
from .grid import grid_search
from .inputs import (
    DT,
    INPUT_LIMIT,
    ModelInputs,
    raw_columns,
    rolling_standardize,
    rolling_step,
)
from .metrics import classification_report, confusion_matrix
from .model import KVCache, MATransformer
from .restore import load_model
from .step import TrainStep
from .walk_forward import fold_ranges, walk_forward

__version__ = "0.1.0"

__all__ = [
    "ATTENTION_KINDS",
    "COMPILE_MODES",
    "DT",
    "INPUT_LIMIT",
    "CheckpointError",
    "Config",
    "DataConfig",
    "KVCache",
    "MATransformer",
    "ModelInputs",
    "ModelConfig",
    "Splits",
    "TickArrays",
    "TrainConfig",
    "TrainStep",
    "WindowDataset",
    "__version__",
    "benchmark_steps",
    "classification_report",
    "config_from_dict",
    "confusion_matrix",
    "evaluate_checkpoint",
    "evaluate_runs",
    "fit",
    "fold_ranges",
    "grid_search",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_splits",
    "load_ticks",
    "logistic_regression",
    "model_config",
    "prepare",
    "raw_columns",
    "rolling_standardize",
    "rolling_step",
    "save_checkpoint",
    "split_ranges",
    "tick_arrays",
    "walk_forward",
    "walk_forward_runs",
]

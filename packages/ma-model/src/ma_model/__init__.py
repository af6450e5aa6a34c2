"""ma_model: the MA-Transformer, its training and evaluation."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = ["CheckpointError", "__version__", "load_checkpoint", "save_checkpoint"]

"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a dict of tensors and plain Python values saved by
``torch.save`` and loaded with ``weights_only=True``, so a file from an
untrusted source cannot run code. It carries a format tag and version and the
versions of the packages that wrote it.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

FORMAT = "ma-model-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of a format version we know."""


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("ma-kernels", "ma-features", "ma-model", "torch"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "unknown"
    return found


def _reason(error: Exception) -> str:
    """What torch.load found, without its advice to retry with
    weights_only=False: loading code from a checkpoint is what we refuse."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    detail = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def save_checkpoint(path: str | os.PathLike, **contents: Any) -> Path:
    """Writes ``contents`` (state dicts, config, metrics, step...) to ``path``.

    The file appears whole or not at all: it is written beside its final name
    and renamed over it, so an interrupted run never leaves a torn checkpoint.
    Values must be tensors or plain Python containers of str/int/float/bool/None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        **contents,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a checkpoint gets the mode any new file would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` naming the file for a missing, corrupt or
    foreign file, or one of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # on arbitrary bytes the unpickler raises anything
        raise CheckpointError(
            f"{path}: not a readable checkpoint: not a file torch.save wrote, or one that holds "
            f"more than tensors and plain containers ({_reason(e)})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an {FORMAT} file")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {payload['format_version']} is newer than this ma-model "
            f"reads ({FORMAT_VERSION}); upgrade ma-model"
        )
    return payload

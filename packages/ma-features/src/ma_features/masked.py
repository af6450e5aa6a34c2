"""A tensor paired with the mask of its defined entries."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Masked(NamedTuple):
    """Values with a boolean mask of the entries that are defined.

    Undefined entries (no complete future, no complete window) hold 0, never
    NaN, so a loss or a reduction over ``value`` cannot be poisoned; select
    with ``value[valid]`` or weight by ``valid``.
    """

    value: torch.Tensor
    valid: torch.Tensor

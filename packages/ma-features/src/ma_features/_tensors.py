"""Private helpers of labels and normalize: argument checks and causal
trailing-window sums."""

from __future__ import annotations

import torch

# Prefix sums restart every BLOCK rows (or every window, if longer): one prefix
# sum over N rows accumulates rounding in proportion to N, which would move
# labels thresholded at alpha ~ 1e-5 and rolling variances of price levels.
BLOCK = 1024


def require_finite(name: str, x: torch.Tensor) -> None:
    """Raise a ValueError naming the first NaN or infinite entry of ``x``."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        index = tuple(bad.nonzero()[0].tolist())
        where = ", ".join(map(str, index))
        raise ValueError(f"{name}[{where}] is {x[index].item()}: inputs must be finite")


def require_tensor(name: str, x: object, ndims: tuple[int, ...]) -> None:
    """Raise a ValueError unless ``x`` is a real floating tensor of one of ``ndims``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dims, got {x.dim()}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")


def trailing_sums(x: torch.Tensor, window: int) -> torch.Tensor:
    """``S[t] = x[max(0, t - window + 1) : t + 1].sum(0)`` for ``x`` of shape ``[N, F]``.

    O(N) work, no per-row Python, and causal to the bit on the CPU: ``S[t]``
    reads only rows ``<= t`` (block boundaries depend on the row index, not on N).
    """
    n = x.shape[0]
    block = max(window, BLOCK)
    blocks = -(-n // block)
    padded = x.new_zeros((blocks * block, x.shape[1]))
    padded[:n] = x
    local = padded.view(blocks, block, -1).cumsum(dim=1)
    totals = local[:, -1]
    local = local.view(blocks * block, -1)[:n]
    sums = local.clone()
    if n > window:
        # Row t's window starts after row j = t - window, in t's block or (as
        # window <= block) in the one before: then add that block's tail.
        j = torch.arange(n - window, device=x.device)
        crosses = (j // block != (j + window) // block).unsqueeze(1)
        tail = torch.where(crosses, totals[j // block] - local[j], -local[j])
        sums[window:] = local[window:] + tail
    return sums

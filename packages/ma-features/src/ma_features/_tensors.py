"""Private helpers of labels and normalize: argument checks and causal
rolling moments."""

from __future__ import annotations

import torch


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


def rolling_moments(
    x: torch.Tensor, window: int, with_var: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean (and population variance) of rows ``max(0, t - window + 1) .. t`` of ``x [N, F]``.

    O(N) work, no per-row Python, causal to the bit on the CPU. Prefix sums
    restart every ``window`` rows, each block shifted by its first row: a
    row's window spans its own block and the one before, so sums stay local
    and rounding is that of values within 2 windows of the row, not of the
    whole series (one global prefix sum of squares of drifting prices cancels
    catastrophically).
    """
    n, f = x.shape
    blocks = -(-n // window)
    padded = x.new_zeros((blocks * window, f))
    padded[:n] = x
    grid = padded.view(blocks, window, f)
    shift = grid[:, 0]
    dev = grid - shift.unsqueeze(1)
    rows = torch.arange(n, device=x.device)
    block = rows // window
    count = (rows + 1).clamp_max(window).unsqueeze(1).to(x.dtype)

    # Per block: inclusive prefix sums (flattened to rows) and totals.
    prefix1 = dev.cumsum(dim=1)
    p1, t1 = prefix1.view(-1, f)[:n], prefix1[:, -1]
    s1 = p1.clone()
    if with_var:
        prefix2 = dev.square().cumsum(dim=1)
        p2, t2 = prefix2.view(-1, f)[:n], prefix2[:, -1]
        s2 = p2.clone()
    if n > window:
        # Row t >= window: its own block up to t, plus the previous block's
        # rows after j = t - window, moved from that block's shift to t's.
        t = rows[window:]
        j = t - window
        prev = block[j]
        tail = (window - 1 - t % window).unsqueeze(1).to(x.dtype)
        d = shift[prev] - shift[block[t]]
        a1 = t1[prev] - p1[j]
        s1[window:] = p1[window:] + a1 + tail * d
        if with_var:
            a2 = t2[prev] - p2[j]
            s2[window:] = p2[window:] + a2 + 2 * d * a1 + tail * d.square()
    mean_dev = s1 / count
    mean = mean_dev + shift[block]
    if not with_var:
        return mean, None
    return mean, (s2 / count - mean_dev.square()).clamp_min(0)

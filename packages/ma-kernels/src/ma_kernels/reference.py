"""Float64 reference implementations: plain torch, written for clarity, the
oracle every kernel is tested against. Inputs may be any dtype or device; the
results are float64 on the CPU."""

from __future__ import annotations

import torch


def l1_features(book: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`ma_kernels.l1_features` (same columns, same policies)."""
    b = book.detach().to(device="cpu", dtype=torch.float64)
    bid, bid_size, ask, ask_size = b.unbind(dim=1)
    spread = ask - bid
    mid = (ask + bid) / 2
    depth = bid_size + ask_size
    has_depth = depth > 0
    microprice = torch.where(has_depth, (bid * ask_size + ask * bid_size) / depth, mid)
    imbalance = torch.where(has_depth, (bid_size - ask_size) / depth, torch.zeros_like(mid))

    ofi = torch.zeros_like(mid)
    if len(b) > 1:
        prev_bid, prev_bid_size, prev_ask, prev_ask_size = b[:-1].unbind(dim=1)
        now_bid, now_bid_size, now_ask, now_ask_size = b[1:].unbind(dim=1)
        bid_flow = (now_bid >= prev_bid) * now_bid_size - (now_bid <= prev_bid) * prev_bid_size
        ask_flow = (now_ask <= prev_ask) * now_ask_size - (now_ask >= prev_ask) * prev_ask_size
        ofi[1:] = bid_flow - ask_flow
    return torch.stack([spread, mid, microprice, imbalance, ofi], dim=1)

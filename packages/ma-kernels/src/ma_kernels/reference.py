"""Float64 reference implementations: plain torch, written for clarity, the
oracle every kernel is tested against. Inputs may be any dtype or device; the
results are float64 on the CPU."""

from __future__ import annotations

import torch


def l1_features(book: torch.Tensor) -> torch.Tensor:
    """The level-1 columns of :func:`book_features` from a ``[N, 4]`` book (bid,
    bid size, ask, ask size): spread, mid, microprice, imbalance, OFI."""
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


def rolling_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """``out[t] = x[max(0, t - window + 1) : t + 1].sum(0)`` in float64: the
    trailing window of ``window`` rows, partial at the start of the series."""
    x = x.detach().to(device="cpu", dtype=torch.float64)
    prefix = torch.cat([x.new_zeros((1, *x.shape[1:])), x.cumsum(0)])
    t = torch.arange(len(x))
    return prefix[t + 1] - prefix[(t + 1 - window).clamp_min(0)]


def log_mid_returns(mid: torch.Tensor) -> torch.Tensor:
    """``r[t] = log(mid[t] / mid[t - 1])``, ``r[0] = 0``, and 0 where a mid is not positive.
    Taken as ``log1p((mid[t] - mid[t - 1]) / mid[t - 1])``: the logarithm of the
    rounded ratio would lose the relative precision of a tiny return."""
    m = mid.detach().to(device="cpu", dtype=torch.float64)
    r = torch.zeros_like(m)
    if len(m) > 1:
        valid = (m[1:] > 0) & (m[:-1] > 0)
        step = (m[1:] - m[:-1]) / m[:-1].where(valid, 1.0)
        r[1:] = torch.where(valid, torch.log1p(step), 0.0)
    return r


def rolling_time_sum(x: torch.Tensor, time: torch.Tensor, tau: int) -> torch.Tensor:
    """``out[t]`` = sum of ``x[j]`` over ``j <= t`` with ``time[j] > time[t] - tau``
    (int64 ns, non-decreasing): differences of one float64 prefix sum."""
    x = x.detach().to(device="cpu", dtype=torch.float64)
    time = time.detach().cpu()
    prefix = torch.cat([x.new_zeros((1, *x.shape[1:])), x.cumsum(0)])
    first = torch.searchsorted(time, time - tau, right=True)
    return prefix[1:] - prefix[first]


def depth_k_imbalance(bid_size: torch.Tensor, ask_size: torch.Tensor, k: int) -> torch.Tensor:
    """``(sum of the best k bid sizes - same on the ask) / their total``; 0 on an empty book."""
    bids = bid_size.detach().cpu().double()[:, :k].sum(1)
    asks = ask_size.detach().cpu().double()[:, :k].sum(1)
    total = bids + asks
    return torch.where(total > 0, (bids - asks) / total.where(total > 0, 1.0), 0.0)


def level_ofi(
    bid_price: torch.Tensor, bid_size: torch.Tensor, ask_price: torch.Tensor, ask_size: torch.Tensor
) -> torch.Tensor:
    """``[N, K]`` order flow imbalance of each level against the previous row (row 0: 0).
    An empty level (NaN price) is priced -inf on the bid side and +inf on the ask side."""
    b, qb, a, qa = (t.detach().cpu().double() for t in (bid_price, bid_size, ask_price, ask_size))
    b, a = b.nan_to_num(nan=-torch.inf), a.nan_to_num(nan=torch.inf)
    ofi = torch.zeros_like(qb)
    bid_flow = (b[1:] >= b[:-1]) * qb[1:] - (b[1:] <= b[:-1]) * qb[:-1]
    ask_flow = (a[1:] <= a[:-1]) * qa[1:] - (a[1:] >= a[:-1]) * qa[:-1]
    ofi[1:] = bid_flow - ask_flow
    return ofi


def book_features(
    time: torch.Tensor,
    bid_price: torch.Tensor,
    bid_size: torch.Tensor,
    ask_price: torch.Tensor,
    ask_size: torch.Tensor,
    trade_price: torch.Tensor,
    trade_size: torch.Tensor,
    trade_side: torch.Tensor,
    *,
    instant: tuple[str, ...] = (
        "spread", "mid", "microprice", "imbalance", "ofi", "log_return", "signed_volume",
        "inter_arrival", "mid_change", "microprice_offset", "log_depth",
    ),
    depth_imbalance: tuple[int, ...] = (),
    ofi_levels: int = 0,
    rolling: tuple[str, ...] = ("ofi", "signed_volume", "vwap", "realized_variance"),
    windows: tuple[int, ...] = (100,),
    time_windows: tuple[int, ...] = (),
) -> torch.Tensor:
    """Reference for :func:`ma_kernels.book_features` (same columns, same policies)."""
    bp, bs, ap, as_, price, size, side = (
        t.detach().to("cpu", torch.float64)
        for t in (bid_price, bid_size, ask_price, ask_size, trade_price, trade_size, trade_side)
    )
    time = time.detach().cpu()
    level1 = l1_features(torch.stack([bp[:, 0], bs[:, 0], ap[:, 0], as_[:, 0]], 1))
    mid, ofi = level1[:, 1], level1[:, 4]
    returns = log_mid_returns(mid)
    signed = side * size
    gaps, mid_change = torch.zeros_like(mid), torch.zeros_like(mid)
    gaps[1:] = (time[1:] - time[:-1]).double() * 1e-9
    mid_change[1:] = mid[1:] - mid[:-1]
    per_event = dict(zip(("spread", "mid", "microprice", "imbalance", "ofi"), level1.unbind(1),
                         strict=True))
    per_event.update(log_return=returns, signed_volume=signed, inter_arrival=gaps,
                     mid_change=mid_change, microprice_offset=level1[:, 2] - mid,
                     log_depth=torch.log1p(bs[:, 0] + as_[:, 0]))
    columns = [per_event[name] for name in instant]
    columns += [depth_k_imbalance(bs, as_, k) for k in depth_imbalance]
    if ofi_levels:
        levels = level_ofi(bp[:, :ofi_levels], bs[:, :ofi_levels], ap[:, :ofi_levels],
                           as_[:, :ofi_levels])
        columns += [*levels.unbind(1), levels.sum(1)]
    terms = torch.stack([ofi, signed, price * size, size, (size > 0).double(), returns**2], 1)
    sums = [rolling_sum(terms, w) for w in windows]
    sums += [rolling_time_sum(terms, time, tau) for tau in time_windows]
    for window in sums:
        ofi_sum, signed_sum, notional, volume, trades, squares = window.unbind(1)
        values = {
            "ofi": ofi_sum,
            "signed_volume": signed_sum,
            "vwap": torch.where(trades > 0, notional / volume.where(trades > 0, 1.0), mid),
            "realized_variance": squares.clamp_min(0.0),
        }
        columns += [values[name] for name in rolling]
    return torch.stack(columns, 1) if columns else mid.new_empty((len(mid), 0))


def normalize_window(window: int | tuple[int, int]) -> tuple[int, int]:
    """``window`` as ``(left, right)``: an int W is the causal window ``(W, 0)``.

    ``left`` counts the visible keys at or before the query (itself included),
    ``right`` those after it; both in units of ``dilation`` steps.
    """
    if type(window) is int:
        left, right = window, 0
    elif isinstance(window, (tuple, list)) and len(window) == 2 and {*map(type, window)} == {int}:
        left, right = window
    else:
        raise ValueError(f"window must be an int or a (left, right) pair of ints, got {window!r}")
    if left < 1 or right < 0:
        raise ValueError(
            f"window needs left >= 1 (each query sees itself) and right >= 0, got {window!r}"
        )
    return left, right


def sliding_window_mask(
    length: int, window: int | tuple[int, int], dilation: int = 1
) -> torch.Tensor:
    """``[length, length]`` boolean mask, True where query i sees key j:
    ``(i - j) % dilation == 0`` and ``-right * dilation <= i - j < left * dilation``."""
    left, right = normalize_window(window)
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    pos = torch.arange(length)
    offset = pos[:, None] - pos[None, :]
    return (offset % dilation == 0) & (offset >= -right * dilation) & (offset < left * dilation)


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int | tuple[int, int],
    dilation: int = 1,
    scale: float | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`ma_kernels.sliding_window_attention`: dense masked
    softmax attention in float64 on ``[B, H, L, D]`` tensors.

    ``k`` and ``v`` may have fewer heads than ``q`` (grouped-query attention:
    query head h reads key/value head ``h // (H // H_kv)``). Differentiable:
    gradients with respect to float64 leaves are the backward's oracle (see
    :func:`sliding_window_attention_backward`). With ``return_lse`` also returns
    the ``[B, H, L]`` log-sum-exp of the scaled scores over visible keys.
    """
    q, k, v = (t.to(device="cpu", dtype=torch.float64) for t in (q, k, v))
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads % kv_heads:
        raise ValueError(f"q has {heads} heads, not a multiple of k's {kv_heads}")
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale
    mask = sliding_window_mask(q.shape[-2], window, dilation)
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return (out, torch.logsumexp(scores, dim=-1)) if return_lse else out


def sliding_window_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grad_out: torch.Tensor,
    window: int | tuple[int, int],
    dilation: int = 1,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv)`` of :func:`sliding_window_attention` for the output
    gradient ``grad_out``, by autograd in float64 (dk, dv summed over each
    key/value head's query group)."""
    leaves = [t.detach().to(device="cpu", dtype=torch.float64).requires_grad_() for t in (q, k, v)]
    out = sliding_window_attention(*leaves, window, dilation, scale)
    grad = grad_out.detach().to(device="cpu", dtype=torch.float64)
    dq, dk, dv = torch.autograd.grad(out, leaves, grad)
    return dq, dk, dv


def transformer_step(x, dt, active, params, keys, values, pos, *, heads: int, window: int,
                     dilations) -> tuple[torch.Tensor, list, list, torch.Tensor]:
    """:func:`ma_kernels.transformer_step` in float64, one sequence at a time,
    without touching its arguments: returns ``(out, keys, values, pos)``, the
    caches and positions as the op leaves them."""
    from .step import parameter_names

    def f64(t):
        return t.detach().to(device="cpu", dtype=torch.float64)

    p = dict(zip(parameter_names(len(dilations)), map(f64, params), strict=True))
    keys, values = [f64(t).clone() for t in keys], [f64(t).clone() for t in values]
    x, dt, active, pos = f64(x), f64(dt), active.cpu(), pos.cpu().clone()
    model_dim = p["embed.weight"].shape[0]
    head_dim = model_dim // heads

    def linear(name, v):
        return p[f"{name}.weight"] @ v + p[f"{name}.bias"]

    def norm(name, v):
        return torch.nn.functional.layer_norm(v, (model_dim,), p[f"{name}.weight"],
                                              p[f"{name}.bias"])

    def rotate(v, cos, sin):  # pairs (2i, 2i + 1) of each head
        even, odd = v[..., 0::2], v[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)

    out = []
    for b in range(len(x)):
        u = torch.log1p(dt[b].clamp_min(0))
        angle = u * p["time.freq"] + p["time.phase"]
        h = linear("embed", x[b]) + linear("time.proj", torch.cat([u[None], angle.sin(),
                                                                   angle.cos()]))
        at = int(pos[b])
        inv_freq = 10_000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        cos, sin = torch.cos(at * inv_freq), torch.sin(at * inv_freq)
        for layer, dilation in enumerate(dilations):
            block, capacity = f"blocks.{layer}", window * dilation
            q, k, v = linear(f"{block}.attn.qkv", norm(f"{block}.norm1", h)).view(3, heads,
                                                                                  head_dim)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if active[b]:
                keys[layer][b, :, at % capacity] = k
                values[layer][b, :, at % capacity] = v
            seen = [at - j * dilation for j in range(window) if at - j * dilation >= 0]
            ring_k = keys[layer][b][:, [s % capacity for s in seen]]
            ring_v = values[layer][b][:, [s % capacity for s in seen]]
            ring_k[:, 0], ring_v[:, 0] = k, v  # the new tick, active or not
            weights = torch.softmax((ring_k @ q[:, :, None])[..., 0] * head_dim**-0.5, -1)
            y = (weights[:, :, None] * ring_v).sum(1).flatten()
            h = h + linear(f"{block}.attn.out", y)
            gate, value = linear(f"{block}.mlp.up", norm(f"{block}.norm2", h)).chunk(2)
            h = h + linear(f"{block}.mlp.down", torch.nn.functional.silu(gate) * value)
        h = norm("norm", h)
        out.append(torch.cat([linear("direction", h), linear("regression", h)]))
        pos[b] += int(active[b])
    return torch.stack(out), keys, values, pos

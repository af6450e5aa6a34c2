"""The MA-Transformer: a local-attention transformer over tick sequences.

Reads top to bottom:

1. ``TimeEncoding``: ticks arrive irregularly, so the time since the last
   event (``log1p`` of dt in train-median units) goes through learned Fourier
   features and is added to the projected inputs.
2. Rotary position encoding of the event index inside attention: scores then
   depend on how many ticks apart two events are, never on absolute position,
   so a model trained on short windows streams for ever.
3. Pre-norm blocks: sliding-window attention (``ma_kernels``, dilation per
   layer) and a fused SwiGLU MLP.
4. Heads: 3-class mid-price direction per horizon, and a regression target.

``step`` runs one new tick for any subset of the sequences (instruments)
against a ring-buffer ``KVCache`` of ``window * dilation`` slots per layer,
each sequence at its own position; it equals ``forward`` at that position.
In float32 without gradients it is one kernel (``ma_kernels.transformer_step``,
where the sizes are in its family); otherwise the same arithmetic in torch
ops. Either way it has static shapes and no data-dependent Python, so it can
be captured in a CUDA graph.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import ma_kernels

from .config import ModelConfig

ROPE_BASE = 10_000.0


class TimeEncoding(nn.Module):
    """``u = log1p(dt)`` -> ``[u, sin(u w + b), cos(u w + b)]`` with learned
    frequencies ``w`` and phases ``b`` -> ``model_dim``."""

    def __init__(self, frequencies: int, model_dim: int) -> None:
        super().__init__()
        # Log-spaced initial frequencies cover gaps from a fraction of a typical dt to many.
        self.freq = nn.Parameter(torch.logspace(-1, 1, frequencies))
        self.phase = nn.Parameter(torch.zeros(frequencies))
        self.proj = nn.Linear(2 * frequencies + 1, model_dim)

    def forward(self, dt: torch.Tensor) -> torch.Tensor:
        u = torch.log1p(dt.clamp_min(0)).unsqueeze(-1)
        angle = u * self.freq + self.phase
        return self.proj(torch.cat([u, torch.sin(angle), torch.cos(angle)], dim=-1))


def rope_angles(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[..., head_dim / 2]`` of the event index ``positions``.

    Angles are formed in float64: at position 10^9 a float32 angle would be
    off by whole radians.
    """
    inv_freq = ROPE_BASE ** (-torch.arange(0, head_dim, 2, device=positions.device,
                                           dtype=torch.float64) / head_dim)
    angle = positions.to(torch.float64).unsqueeze(-1) * inv_freq
    return torch.cos(angle), torch.sin(angle)


@torch.compiler.disable
def rope_table(length: int, head_dim: int, device: torch.device):
    """``rope_angles`` of positions 0 .. length - 1, for ``forward``. Left out
    of compiled graphs: there Inductor would fuse the float64 cos and sin into
    every kernel that rotates q or k and recompute them per batch row and head
    (2 ms of a 7 ms training step)."""
    return rope_angles(torch.arange(length, device=device), head_dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates pairs (x[2i], x[2i+1]) of the last axis by the given angles."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


@dataclass
class KVCache:
    """Rotated keys and values of the last ``window * dilation`` ticks of
    each layer and sequence, in ring buffers: tick p lives in slot
    ``p % capacity``. ``pos`` (``[B]`` int64) is each sequence's next tick."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pos: torch.Tensor


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, dilation: int) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.num_heads, cfg.model_dim // cfg.num_heads
        self.window, self.dilation, self.kind = cfg.window, dilation, cfg.attention
        self.qkv = nn.Linear(cfg.model_dim, 3 * cfg.model_dim)
        self.out = nn.Linear(cfg.model_dim, cfg.model_dim)
        self.capacity = cfg.window * dilation

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x, cos, sin)
        if self.kind == "ma":
            y = ma_kernels.sliding_window_attention(q, k, v, self.window, dilation=self.dilation)
        elif self.kind == "sdpa_dense":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = _flex_window_attention(q, k, v, self.window, self.dilation)
        return self.out(y.transpose(1, 2).flatten(2))

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor,
             active: torch.Tensor) -> torch.Tensor:
        """``x [B, 1, C]``, sequence b at position ``pos[b]``; writes the k, v
        of the ``active`` sequences into their rings (the others keep theirs)."""
        q, k, v = self._qkv(x, cos, sin)
        b, heads, _, head_dim = k.shape
        slot = (pos % self.capacity).view(b, 1, 1, 1).expand(b, heads, 1, head_dim)
        keep = ~active.view(b, 1, 1, 1)
        keys.scatter_(2, slot, torch.where(keep, keys.gather(2, slot), k))
        values.scatter_(2, slot, torch.where(keep, values.gather(2, slot), v))
        # The keys this query sees in forward: pos, pos - d, ..., pos - (W-1) d, those >= 0.
        back = torch.arange(self.window, device=x.device) * self.dilation
        seen = ((pos[:, None] - back) % self.capacity).view(b, 1, -1, 1)
        seen = seen.expand(b, heads, self.window, head_dim)
        scores = q @ keys.gather(2, seen).transpose(-1, -2) * self.head_dim**-0.5
        scores = scores.masked_fill((back > pos[:, None]).view(b, 1, 1, -1), float("-inf"))
        y = scores.softmax(dim=-1) @ values.gather(2, seen)
        return self.out(y.transpose(1, 2).flatten(2))


def _flex_window_attention(q, k, v, window: int, dilation: int) -> torch.Tensor:
    mask = _flex_block_mask(window, dilation, q.shape[2], str(q.device))
    return _flex_kernel(q.is_cuda)(q, k, v, block_mask=mask)


@functools.cache
def _flex_kernel(compiled: bool):
    # Compiled once per process; uncompiled FlexAttention (the CPU path) is a slow reference.
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention) if compiled else flex_attention


@functools.lru_cache(maxsize=32)
def _flex_block_mask(window: int, dilation: int, length: int, device: str):
    """The block mask of the dilated causal window; built once per shape, not per call."""
    from torch.nn.attention.flex_attention import create_block_mask

    def visible(b, h, qi, ki):
        gap = qi - ki
        return (gap >= 0) & (gap < window * dilation) & (gap % dilation == 0)

    return create_block_mask(visible, None, None, length, length, device=device)


class MLP(nn.Module):
    """SwiGLU with the gate and value in one matmul."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.model_dim
        self.up = nn.Linear(cfg.model_dim, 2 * hidden)
        self.down = nn.Linear(hidden, cfg.model_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * value)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, dilation: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.model_dim), nn.LayerNorm(cfg.model_dim)
        self.attn = Attention(cfg, dilation)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin):
        x = x + self.drop(self.attn(self.norm1(x), cos, sin))
        return x + self.drop(self.mlp(self.norm2(x)))

    def step(self, x, cos, sin, keys, values, pos, active):
        x = x + self.attn.step(self.norm1(x), cos, sin, keys, values, pos, active)
        return x + self.mlp(self.norm2(x))


class MATransformer(nn.Module):
    """``forward(x [B, L, F], dt [B, L]) -> (logits [B, L, H, 3], reg [B, L, R])``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.input_dim is None:
            raise ValueError("model.input_dim is not set: take the config from "
                             "ma_model.model_config (it reads data.features) or set it")
        self.config = cfg
        self.embed = nn.Linear(cfg.input_dim, cfg.model_dim)
        self.time = TimeEncoding(cfg.time_frequencies, cfg.model_dim)
        self.blocks = nn.ModuleList(Block(cfg, d) for d in cfg.dilations)
        self.norm = nn.LayerNorm(cfg.model_dim)
        self.direction = nn.Linear(cfg.model_dim, 3 * cfg.num_horizons)
        self.regression = nn.Linear(cfg.model_dim, cfg.num_regression)
        self.apply(_init)

    def _check(self, x: torch.Tensor, dt: torch.Tensor, ndim: int) -> None:
        if x.dim() != ndim or x.shape[-1] != self.config.input_dim:
            want = "[B, L, F]" if ndim == 3 else "[B, F]"
            raise ValueError(f"x must be {want} with F = input_dim = {self.config.input_dim}, "
                             f"got shape {tuple(x.shape)}")
        if dt.shape != x.shape[:-1]:
            raise ValueError(f"dt must have shape {tuple(x.shape[:-1])} (x without its feature "
                             f"axis), got {tuple(dt.shape)}")

    def _heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(h)
        logits = self.direction(h).unflatten(-1, (self.config.num_horizons, 3))
        return logits, self.regression(h)

    def forward(self, x: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x, dt, 3)
        # First: rope_table breaks the graph, and a break before any tensor
        # work leaves the rest of forward one compiled graph.
        cos, sin = rope_table(x.shape[1], self.config.model_dim // self.config.num_heads,
                              x.device)
        h = self.embed(x) + self.time(dt)
        for block in self.blocks:
            h = block(h, cos, sin)
        return self._heads(h)

    def new_cache(self, batch: int, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> KVCache:
        """An empty cache for ``batch`` sequences; each one's next tick is position 0."""
        if self.config.attention == "sdpa_dense":
            raise ValueError("step needs a windowed attention ('ma' or 'flex'); dense causal "
                             "attention has no bounded cache")
        heads, head_dim = self.config.num_heads, self.config.model_dim // self.config.num_heads
        shapes = [(batch, heads, b.attn.capacity, head_dim) for b in self.blocks]
        return KVCache(keys=[torch.zeros(s, device=device, dtype=dtype) for s in shapes],
                       values=[torch.zeros(s, device=device, dtype=dtype) for s in shapes],
                       pos=torch.zeros(batch, dtype=torch.int64, device=device))

    def step(self, x_t: torch.Tensor, dt_t: torch.Tensor, cache: KVCache,
             active: torch.Tensor | None = None, *,
             fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One new tick ``x_t [B, F]``, ``dt_t [B]`` of each ``active [B]``
        sequence (default: all) -> ``(logits [B, H, 3], reg [B, R])``, each
        equal to ``forward`` at that sequence's position; the cache takes the
        active sequences' ticks (slots, ``pos``) in place. The outputs of an
        inactive sequence are computed and mean nothing. ``fused`` (default:
        wherever it can) picks the one-kernel step; False, the torch ops."""
        self._check(x_t, dt_t, 2)
        if active is None:
            active = torch.ones(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        if fused and not self._fused_step(x_t, cache):
            raise ValueError("the fused step takes float32 inputs and caches, no gradients, "
                             "and sizes ma_kernels.step.supports")
        if fused is not False and self._fused_step(x_t, cache):
            out = ma_kernels.transformer_step(
                x_t.contiguous(), dt_t.contiguous(), active, self.step_parameters, cache.keys,
                cache.values, cache.pos, heads=self.config.num_heads,
                window=self.config.window, dilations=list(self.config.dilations))
            logits = 3 * self.config.num_horizons
            return out[:, :logits].unflatten(-1, (self.config.num_horizons, 3)), out[:, logits:]
        h = (self.embed(x_t) + self.time(dt_t)).unsqueeze(1)
        # [B, 1, 1, head_dim / 2]: each sequence's own angles, for all its heads.
        cos, sin = (a[:, None, None] for a in rope_angles(
            cache.pos, self.config.model_dim // self.config.num_heads))
        for block, keys, values in zip(self.blocks, cache.keys, cache.values, strict=True):
            h = block.step(h, cos, sin, keys, values, cache.pos, active)
        cache.pos.add_(active.to(cache.pos.dtype))
        logits, reg = self._heads(h.squeeze(1))
        return logits, reg


    def _fused_step(self, x_t: torch.Tensor, cache: KVCache) -> bool:
        """Whether ``step`` runs as the one-kernel ``ma_kernels.transformer_step``."""
        cfg = self.config
        return (x_t.dtype == cache.keys[0].dtype == torch.float32
                and not (torch.is_grad_enabled() and self.embed.weight.requires_grad)
                and ma_kernels.step.supports(cfg.model_dim, cfg.num_heads, cfg.num_layers,
                                             x_t.device))

    @functools.cached_property
    def step_parameters(self) -> list[nn.Parameter]:
        """The parameters in ``ma_kernels.step.parameter_names`` order, as the
        streaming kernels take them. (The Parameter objects stay while .to()
        moves their data, so this list does too.)"""
        named = dict(self.named_parameters())
        return [named[name] for name in ma_kernels.step.parameter_names(self.config.num_layers)]


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)

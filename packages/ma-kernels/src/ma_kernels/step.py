"""transformer_step: one streaming step of the whole MA-Transformer in one kernel.

A new tick of each sequence (instrument) -> its direction logits and
regression outputs, against ring-buffer KV caches, for the model family the
product streams: inputs projected and added to learned Fourier features of
dt, pre-norm blocks of rotary sliding-window attention (a dilation per
layer) and a SwiGLU MLP, a final LayerNorm and two linear heads
(``ma_model.MATransformer``; :func:`parameter_names` gives its parameters in
the kernel's order). float32. On CUDA one thread-block cluster steps each
tile of 8 sequences in a single launch (head dim 8, 16, 32 or 64, model dim
at most 256); on the CPU a thread per sequence. Here: the public function,
its checks and the kernels' calls; the op (``ma_kernels::transformer_step``)
is declared in ops.py, its float64 twin is ``reference.transformer_step``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _C
from ._checks import check_exact, launch_args, plain_eager

_EMBED = ("embed.weight", "embed.bias", "time.freq", "time.phase", "time.proj.weight",
          "time.proj.bias")
_LAYER = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.out.weight",
          "attn.out.bias", "norm2.weight", "norm2.bias", "mlp.up.weight", "mlp.up.bias",
          "mlp.down.weight", "mlp.down.bias")
_HEAD = ("norm.weight", "norm.bias", "direction.weight", "direction.bias", "regression.weight",
         "regression.bias")
MAX_LAYERS = 16  # csrc/transformer_step.h
CUDA_HEAD_DIMS = (8, 16, 32, 64)
CUDA_MAX_MODEL_DIM = 256


def parameter_names(layers: int) -> list[str]:
    """The parameters of an ``ma_model.MATransformer`` of ``layers`` blocks,
    by their state-dict names, in the order :func:`transformer_step` takes them."""
    return [*_EMBED, *(f"blocks.{i}.{name}" for i in range(layers) for name in _LAYER), *_HEAD]


def supports(model_dim: int, heads: int, layers: int, device: torch.device | str) -> bool:
    """Whether :func:`transformer_step` runs a model of these sizes on ``device``."""
    if layers > MAX_LAYERS or model_dim % heads or (model_dim // heads) % 2:
        return False
    if torch.device(device).type == "cuda":
        return (_C.with_cuda and model_dim // heads in CUDA_HEAD_DIMS
                and model_dim <= CUDA_MAX_MODEL_DIM)
    return torch.device(device).type == "cpu"


def transformer_step(
    x: torch.Tensor,
    dt: torch.Tensor,
    active: torch.Tensor,
    params: Sequence[torch.Tensor],
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    pos: torch.Tensor,
    *,
    heads: int,
    window: int,
    dilations: Sequence[int],
) -> torch.Tensor:
    """One new tick of each of B sequences.

    Args:
        x: ``[B, F]`` inputs of the tick; dt: ``[B]`` its time encoding's input.
        active: ``[B]`` bool: the sequences that ticked. The others' caches and
            positions stay as they are (their output rows mean nothing).
        params: the model's parameters in :func:`parameter_names` order.
        keys, values: per layer ``[B, heads, window * dilations[l], D]``: the
            rotated keys and the values of the last ticks, tick p in slot
            ``p % capacity``; the active sequences' new ones are written.
        pos: ``[B]`` int64, each sequence's position (its ticks so far);
            incremented where active.
        heads, window, dilations: the attention's heads, window (keys per
            query) and dilation of each layer.

    Returns:
        ``[B, 3 * horizons + R]``: the direction logits (3 per horizon), then
        the R regression outputs. float32, all inputs float32 and contiguous.
    """
    _check(x, dt, active, params, keys, values, pos, heads, window, dilations)
    args = (x, dt, active, list(params), list(keys), list(values), pos, heads, window,
            list(dilations))
    if plain_eager(x, dt, active, pos, *params, *keys, *values):
        return _KERNELS[x.device.type](*args)
    return torch.ops.ma_kernels.transformer_step(*args)


def _dims(x, params, heads, window, dilations) -> tuple[int, ...]:
    embed, time_freq, down = params[0], params[2], params[len(_EMBED) + 10]
    direction, regression = params[-4], params[-2]
    return (x.shape[0], x.shape[1], embed.shape[0], heads, down.shape[1], time_freq.shape[0],
            len(dilations), direction.shape[0] // 3, regression.shape[0], window)


def _check(x, dt, active, params, keys, values, pos, heads, window, dilations) -> None:
    layers = len(dilations)
    if not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"dilations must have 1 to {MAX_LAYERS} entries (one per layer), "
                         f"got {layers}")
    if any(type(d) is not int or d < 1 for d in dilations) or type(window) is not int \
            or window < 1 or type(heads) is not int or heads < 1:
        raise ValueError(f"heads, window and dilations must be ints >= 1, got {heads!r}, "
                         f"{window!r}, {list(dilations)!r}")
    names = parameter_names(layers)
    if len(params) != len(names):
        raise ValueError(f"params must be the {len(names)} tensors of parameter_names"
                         f"({layers}), got {len(params)}")
    named = dict(zip(names, params, strict=True))
    if not isinstance(named["embed.weight"], torch.Tensor) or named["embed.weight"].dim() != 2:
        raise ValueError("params[embed.weight] must be a [model_dim, F] tensor")
    model_dim, inputs = named["embed.weight"].shape
    if model_dim % heads or (model_dim // heads) % 2:
        raise ValueError(f"model dim {model_dim} must split into {heads} heads of even size")
    head_dim, batch = model_dim // heads, x.shape[0] if x.dim() == 2 else -1
    frequencies = named["time.freq"].shape[0] if named["time.freq"].dim() == 1 else -1
    hidden = named["blocks.0.mlp.down.weight"].shape[-1]
    horizons = named["direction.weight"].shape[0] // 3
    regression = named["regression.weight"].shape[0]
    want = {"embed.weight": (model_dim, inputs), "embed.bias": (model_dim,),
            "time.freq": (frequencies,), "time.phase": (frequencies,),
            "time.proj.weight": (model_dim, 2 * frequencies + 1), "time.proj.bias": (model_dim,),
            "norm.weight": (model_dim,), "norm.bias": (model_dim,),
            "direction.weight": (3 * horizons, model_dim), "direction.bias": (3 * horizons,),
            "regression.weight": (regression, model_dim), "regression.bias": (regression,)}
    for i in range(layers):
        want.update({f"blocks.{i}.{name}": shape for name, shape in zip(_LAYER, (
            (model_dim,), (model_dim,), (3 * model_dim, model_dim), (3 * model_dim,),
            (model_dim, model_dim), (model_dim,), (model_dim,), (model_dim,),
            (2 * hidden, model_dim), (2 * hidden,), (model_dim, hidden), (model_dim,)),
            strict=True)})
    device = x.device
    tensors = {**{f"params[{n}]": named[n] for n in names}, "x": x, "dt": dt}
    shapes = {**{f"params[{n}]": want[n] for n in names}, "x": (batch, inputs), "dt": (batch,)}
    for i, d in enumerate(dilations):
        shape = (batch, heads, window * d, head_dim)
        tensors.update({f"keys[{i}]": keys[i], f"values[{i}]": values[i]})
        shapes.update({f"keys[{i}]": shape, f"values[{i}]": shape})
    if len(keys) != layers or len(values) != layers:
        raise ValueError(f"keys and values must have one tensor per layer ({layers}), got "
                         f"{len(keys)} and {len(values)}")
    for name, t in tensors.items():
        check_exact(name, t, shapes[name], torch.float32, device, contiguous=True)
    check_exact("active", active, (batch,), torch.bool, device, contiguous=True)
    check_exact("pos", pos, (batch,), torch.int64, device, contiguous=True)
    if device.type == "cuda" and not supports(model_dim, heads, layers, device):
        raise ValueError(f"transformer_step on CUDA takes head dims {CUDA_HEAD_DIMS} and model "
                         f"dims up to {CUDA_MAX_MODEL_DIM}, got {head_dim} and {model_dim}")
    if device.type == "cuda" and any(t.data_ptr() % 16 for t in (*params, *keys, *values)):
        raise ValueError("params, keys and values on CUDA must start on 16-byte boundaries (the "
                         "kernel reads them as float4); pass .clone()s of offset views")


def _pointers(tensors: Sequence[torch.Tensor]) -> list[int]:
    return [t.data_ptr() for t in tensors]


def _out(x: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every buffer the kernels write comes from here (tests fill it with NaN)."""
    return torch.empty(x.shape[0], params[-4].shape[0] + params[-2].shape[0],
                       dtype=torch.float32, device=x.device)


def cpu_kernel(
    x: torch.Tensor, dt: torch.Tensor, active: torch.Tensor, params: list[torch.Tensor],
    keys: list[torch.Tensor], values: list[torch.Tensor], pos: torch.Tensor, heads: int,
    window: int, dilations: list[int],
) -> torch.Tensor:
    out = _out(x, params)
    _C.transformer_step_cpu(_dims(x, params, heads, window, dilations), dilations,
                            _pointers(params), _pointers(keys), _pointers(values),
                            x.data_ptr(), dt.data_ptr(), active.data_ptr(), pos.data_ptr(),
                            out.data_ptr())
    return out


def cuda_kernel(x, dt, active, params, keys, values, pos, heads, window, dilations):
    out = _out(x, params)
    dims = _dims(x, params, heads, window, dilations)
    workspace = torch.empty(_C.transformer_step_cuda_workspace(dims, dilations),
                            dtype=torch.float32, device=x.device)
    _C.transformer_step_cuda(dims, dilations, _pointers(params), _pointers(keys),
                             _pointers(values), x.data_ptr(), dt.data_ptr(), active.data_ptr(),
                             pos.data_ptr(), out.data_ptr(), workspace.data_ptr(),
                             *launch_args(x))
    return out


def fake(x, dt, active, params, keys, values, pos, heads, window, dilations):
    return _out(x, params)


_KERNELS = {"cpu": cpu_kernel, "cuda": cuda_kernel}

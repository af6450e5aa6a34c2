"""Sliding-window and dilated attention on ``[B, H, L, D]`` tensors.

Two ops, ``ma_kernels::sliding_window_attention_forward`` (output and
log-sum-exp) and ``ma_kernels::sliding_window_attention_backward`` (dq, dk,
dv from the saved log-sum-exp), joined by autograd; fakes let them trace
under ``torch.compile`` and capture in CUDA graphs. Here: the public
function, checks, kernels, fakes and the autograd rule; the ops are declared
in ops.py.

In plain eager mode (no compile, no dispatch or torch-function mode, no
functorch transform, no tensor subclass) the same kernels run from an
``autograd.Function`` without the ops' Python dispatch, which costs more host
time per call than the whole kernel at small shapes.
"""

from __future__ import annotations

import math

import torch
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.autograd import forward_ad
from torch.autograd.function import once_differentiable

from . import _C
from ._checks import FLOAT_CODES, check_device, cuda_stream, plain_eager
from .reference import normalize_window

# The C++ DType codes (csrc/common.h); 16-bit ones run on CUDA only.
DTYPE_CODES = {**FLOAT_CODES, torch.float16: 2, torch.bfloat16: 3}
# Head dims the CUDA kernels are built for; the CPU kernel takes any.
CUDA_HEAD_DIMS = (32, 64, 128)
CUDA_MAX_LENGTH = 2**30


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int | tuple[int, int],
    *,
    dilation: int = 1,
    scale: float | None = None,
) -> torch.Tensor:
    """Local attention: query i attends to keys j with ``(i - j) % dilation == 0``
    and ``-right * dilation <= i - j < left * dilation``.

    Args:
        q: ``[B, H, L, D]`` queries (the layout of
            ``scaled_dot_product_attention``), float32, float64, float16 or
            bfloat16, on CPU or CUDA (there D is 32, 64 or 128 and L below
            2^30). Any strides with a contiguous last axis.
        k, v: ``[B, H_kv, L, D]`` keys and values, same dtype and device;
            ``H_kv`` divides ``H`` (grouped-query attention).
        window: ``W`` for the causal window of W keys ending at the query
            (itself included), or ``(left, right)``: ``left >= 1`` keys at or
            before the query and ``right >= 0`` after it.
        dilation: stride between visible keys; the window spans
            ``(left + right - 1) * dilation + 1`` positions.
        scale: score scale, ``D ** -0.5`` if None.

    Returns:
        ``[B, H, L, D]`` contiguous output of q's dtype. Differentiable in q,
        k and v. On CPU, float16 and bfloat16 are computed in float32.
    """
    left, right, dilation, scale = _check(q, k, v, window, dilation, scale)
    if plain_eager(q, k, v):
        if forward_ad._current_level >= 0:  # inside a dual level: tangents may be attached
            _refuse_forward_ad(any(forward_ad.unpack_dual(t).tangent is not None
                                   for t in (q, k, v)))
        args = (q, k, v, left, right, dilation, scale)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return _EagerAttention.apply(*args)[0]
        return _FORWARD_KERNELS[q.device.type](*args)[0]  # nothing to record
    if not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack():
        _refuse_forward_ad(any(i.key() == torch._C._functorch.TransformType.Jvp
                               for i in retrieve_all_functorch_interpreters()))
    out, _ = torch.ops.ma_kernels.sliding_window_attention_forward(
        q, k, v, left, right, dilation, scale
    )
    return out


def _refuse_forward_ad(tangents: bool) -> None:
    # Without a forward-mode rule the kernels would hand back a zero tangent.
    if tangents:
        raise NotImplementedError(
            "sliding_window_attention has no forward-mode derivative (dual tensors, "
            "torch.func.jvp, jacfwd); use reverse mode: .backward() or torch.autograd.grad"
        )


def _check(q, k, v, window, dilation, scale) -> tuple[int, int, int, float]:
    # Every call runs this: each attribute read costs host time at small shapes.
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_bhld(name, t)
    dtype, device, shape, kv_shape = q.dtype, q.device, q.shape, k.shape
    if not dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not device == k.device == v.device:
        raise ValueError(f"q, k and v must share a device, got {q.device}, {k.device}, {v.device}")
    check_device("q", q)
    if kv_shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(kv_shape)} and "
                         f"{tuple(v.shape)}")
    batch, heads, length, head_dim = shape
    if (kv_shape[0], kv_shape[2], kv_shape[3]) != (batch, length, head_dim):
        raise ValueError(f"k must be [B, H_kv, L, D] = [{batch}, H_kv, {length}, {head_dim}] "
                         f"like q, got {tuple(kv_shape)}")
    if kv_shape[1] == 0 or heads % kv_shape[1]:
        raise ValueError(f"k and v heads ({kv_shape[1]}) must divide q's heads ({heads})")
    if head_dim == 0:
        raise ValueError("head dim D must be at least 1, got shape " + str(tuple(shape)))
    if q.is_cuda:
        if head_dim not in CUDA_HEAD_DIMS:
            raise ValueError(f"head dim {head_dim} is not supported on CUDA; use one of "
                             f"{CUDA_HEAD_DIMS} (the CPU takes any)")
        if length >= CUDA_MAX_LENGTH:
            raise ValueError(f"L = {length} is too long for the CUDA kernels (their tile "
                             f"offsets are 32-bit); L must be below {CUDA_MAX_LENGTH}")
    left, right = normalize_window(window)
    if type(dilation) is not int or dilation < 1:
        raise ValueError(f"dilation must be an int >= 1, got {dilation!r}")
    if scale is None:
        return left, right, dilation, head_dim**-0.5
    if not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite float or None, got {scale!r}")
    return left, right, dilation, float(scale)


def _check_bhld(name: str, t: object) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{name} must be [B, H, L, D] (4 dimensions), got shape {tuple(t.shape)}")
    if t.dtype not in DTYPE_CODES:
        raise ValueError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")
    if t.stride(3) != 1 and t.shape[3] > 1:
        raise ValueError(f"{name} must be contiguous along D (stride 1), got strides "
                         f"{t.stride()}; call .contiguous() first")


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty(like: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests fill it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=like.device)


def _lse_shape(q: torch.Tensor) -> tuple[int, int, int]:
    return tuple(q.shape[:3])


def _strided(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(pointer, stride_b, stride_h, stride_l): a ``[B, H, L, D]`` tensor for C++."""
    return (t.data_ptr(), *t.stride()[:3])


def _problem(q, k, left, right, dilation) -> tuple[int, ...]:
    batch, heads, length, head_dim = q.shape
    return batch, heads, k.shape[1], length, head_dim, left, right, dilation


def forward_cpu(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, left: int, right: int, dilation: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    _require_cpu(q=q, k=k, v=v)
    dtype = q.dtype
    if dtype not in FLOAT_CODES:  # 16-bit on CPU: compute in float32
        q, k, v = q.float(), k.float(), v.float()
    out = _empty(q, tuple(q.shape), q.dtype)
    lse = _empty(q, _lse_shape(q), q.dtype)
    _C.sliding_window_attention_forward_cpu(
        _problem(q, k, left, right, dilation), scale, _strided(q), _strided(k), _strided(v),
        _strided(out), lse.data_ptr(), FLOAT_CODES[q.dtype],
    )
    return out.to(dtype), lse


def _require_cpu(**tensors: torch.Tensor) -> None:
    """The CPU kernels read host memory: a CUDA or meta tensor there would be
    read through a pointer that is not the host's (a crash, not an error)."""
    for name, t in tensors.items():
        if t.device.type != "cpu":
            raise ValueError(f"{name} is on {t.device}, but this is the CPU kernel; call "
                             "ma_kernels.sliding_window_attention, which picks the device's")


def _copies(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Contiguous copies, for the CUDA launchers, which refuse rows off 16-byte
    boundaries (a view at an odd offset) and launch nothing."""
    return tuple(t.clone(memory_format=torch.contiguous_format) for t in tensors)


def forward_cuda(q, k, v, left, right, dilation, scale):
    out = _empty(q, tuple(q.shape), q.dtype)
    lse = _empty(q, _lse_shape(q), _accumulation_dtype(q.dtype))

    def launch(q, k, v):
        return _C.sliding_window_attention_forward_cuda(
            _problem(q, k, left, right, dilation), scale, _strided(q), _strided(k), _strided(v),
            _strided(out), lse.data_ptr(), DTYPE_CODES[q.dtype], q.device.index,
            cuda_stream(q),
        )

    if not launch(q, k, v):
        launch(*_copies(q, k, v))
    return out, lse


def forward_fake(q, k, v, left, right, dilation, scale):
    return (_empty(q, tuple(q.shape), q.dtype),
            _empty(q, _lse_shape(q), _accumulation_dtype(q.dtype)))


def backward_cpu(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, dout: torch.Tensor,
    lse: torch.Tensor, left: int, right: int, dilation: int, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _require_cpu(q=q, k=k, v=v, out=out, dout=dout, lse=lse)
    dtype = q.dtype
    if dtype not in FLOAT_CODES:
        q, k, v, out, dout = (t.float() for t in (q, k, v, out, dout))
    dq, dk, dv, delta = _gradient_buffers(q, k, q.dtype)
    _C.sliding_window_attention_backward_cpu(
        _problem(q, k, left, right, dilation), scale, _strided(q), _strided(k), _strided(v),
        _strided(out), _strided(dout), _strided(dq), _strided(dk), _strided(dv), lse.data_ptr(),
        delta.data_ptr(), FLOAT_CODES[q.dtype],
    )
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


def backward_cuda(q, k, v, out, dout, lse, left, right, dilation, scale):
    # The kernels accumulate in fp32 (fp64) and write the input dtype.
    dq, dk, dv, delta = _gradient_buffers(q, k, q.dtype)

    def launch(q, k, v, out, dout):
        return _C.sliding_window_attention_backward_cuda(
            _problem(q, k, left, right, dilation), scale, _strided(q), _strided(k),
            _strided(v), _strided(out), _strided(dout), _strided(dq), _strided(dk), _strided(dv),
            lse.data_ptr(), delta.data_ptr(), DTYPE_CODES[q.dtype], q.device.index,
            cuda_stream(q),
        )

    if not launch(q, k, v, out, dout):
        launch(*_copies(q, k, v, out, dout))
    return dq, dk, dv


def backward_fake(q, k, v, out, dout, lse, left, right, dilation, scale):
    return (_empty(q, tuple(q.shape), q.dtype), _empty(k, tuple(k.shape), k.dtype),
            _empty(v, tuple(v.shape), v.dtype))


def _gradient_buffers(q, k, dtype):
    """dq, dk, dv in ``dtype`` and the kernel's delta workspace."""
    return (_empty(q, tuple(q.shape), dtype), _empty(k, tuple(k.shape), dtype),
            _empty(k, tuple(k.shape), dtype),
            _empty(q, _lse_shape(q), _accumulation_dtype(q.dtype)))


def setup_context(ctx, inputs, output):
    q, k, v, left, right, dilation, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.window = (left, right, dilation, scale)
    ctx.mark_non_differentiable(lse)


def autograd_backward(ctx, dout, _dlse):
    q, k, v, out, lse = ctx.saved_tensors
    args = (q, k, v, out, dout.contiguous(), lse, *ctx.window)
    if plain_eager(q, k, v):
        dq, dk, dv = _BACKWARD_KERNELS[q.device.type](*args)
    else:
        dq, dk, dv = torch.ops.ma_kernels.sliding_window_attention_backward(*args)
    return dq, dk, dv, None, None, None, None


_FORWARD_KERNELS = {"cpu": forward_cpu, "cuda": forward_cuda}
_BACKWARD_KERNELS = {"cpu": backward_cpu, "cuda": backward_cuda}
class _EagerAttention(torch.autograd.Function):
    """The forward op's kernels and autograd without its dispatch. (The old
    forward(ctx, ...) form: with a separate setup_context, apply binds the
    arguments through inspect.signature on every call.)"""

    @staticmethod
    def forward(ctx, q, k, v, left, right, dilation, scale):
        args = (q, k, v, left, right, dilation, scale)
        output = _FORWARD_KERNELS[q.device.type](*args)
        setup_context(ctx, args, output)
        ctx.set_materialize_grads(False)  # no zeros for the lse's absent gradient
        return output

    backward = staticmethod(once_differentiable(autograd_backward))

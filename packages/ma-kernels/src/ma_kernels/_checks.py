"""Argument checks shared by every op: each failure names the argument and
what was expected, as a ValueError, before any pointer reaches C++."""

from __future__ import annotations

import torch

from . import _C

# The C++ side's DType codes (csrc/common.h).
FLOAT_CODES = {torch.float32: 0, torch.float64: 1}


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int,
    dtypes: dict[torch.dtype, int],
    shape: tuple[int | None, ...] | None = None,
) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, t.shape, strict=True)):
            if want is not None and want != got:
                raise ValueError(
                    f"{name} must have size {want} in dimension {axis}, got shape {tuple(t.shape)}"
                )
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(
            f"{name} must have dtype {allowed}; got {str(t.dtype).removeprefix('torch.')}"
        )
    check_device(name, t)


def check_exact(name: str, t: object, shape: tuple[int, ...], dtype: torch.dtype,
                device: torch.device, *, contiguous: bool = False) -> None:
    """``t`` is a tensor of exactly this shape and dtype on ``device``; each
    failure a ValueError naming ``name`` and what was expected."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, the others on {device}: one device for all")
    check_device(name, t)
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous; call .contiguous() first")


def check_device(name: str, t: torch.Tensor) -> None:
    if t.is_cuda:
        if not _C.with_cuda:
            raise ValueError(
                f"{name} is on {t.device}, but this ma_kernels build has no CUDA kernels; "
                "reinstall it where nvcc is found (MA_KERNELS_CUDA=ON makes that an error if not)"
            )
    elif not (t.is_cpu or t.is_meta):
        raise ValueError(f"{name} is on {t.device}; ma_kernels runs on cpu and cuda devices")


def cuda_stream(t: torch.Tensor) -> int:
    """The handle of torch's current stream on t's device, for the C++ launch
    (the raw getter Inductor and Triton use: no Stream object per call)."""
    return torch._C._cuda_getCurrentRawStream(t.device.index)


def matrix_args(t: torch.Tensor) -> tuple[int, int, int, int]:
    """A 2-D tensor as the C++ side takes it: pointer, rows, row and column strides."""
    return t.data_ptr(), t.shape[0], t.stride(0), t.stride(1)


def launch_args(t: torch.Tensor) -> tuple[int, int]:
    """Where a CUDA kernel on t runs: device index and torch's current stream."""
    return t.device.index, cuda_stream(t)


# Subclasses that may take the kernels straight (a Parameter is a plain tensor).
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def plain_eager(*tensors: torch.Tensor) -> bool:
    """Whether nothing needs to see an op, so its kernels may run without its
    dispatch (which costs more host time than a small kernel): not compiling
    or exporting, no dispatch mode (fake tensors, make_fx, FlopCounter), no
    torch-function mode, no vmap or grad transform, no profiler (which then
    sees the op by name), plain tensors on a CPU or CUDA device."""
    return (
        not torch.compiler.is_compiling()
        and not torch.autograd.profiler._is_profiler_enabled
        and torch._C._len_torch_dispatch_stack() == 0
        and not torch._C._is_torch_function_mode_enabled()
        and torch._C._functorch.peek_interpreter_stack() is None
        and all(type(t) in _PLAIN_TYPES for t in tensors)
        and tensors[0].device.type in ("cpu", "cuda")
    )

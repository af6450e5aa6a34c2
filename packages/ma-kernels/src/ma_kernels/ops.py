"""Every op of ma_kernels, declared in one place with torch.library.custom_op
(as pytorch/extension-cpp and ao do): its CPU and CUDA kernels, its fake
(so it traces under torch.compile and captures in CUDA graphs) and its
autograd. Each family's public function, argument checks and kernel calls
live beside it (book.py, attention.py); its float64 twin in reference.py.

- ``ma_kernels::book_features``: :func:`ma_kernels.book_features`;
- ``ma_kernels::book_features_step``, ``..._commit`` and ``book_tick_reasons``:
  :func:`ma_kernels.book_features_step`, :func:`ma_kernels.book_features_commit`,
  :func:`ma_kernels.book_tick_reasons`;
- ``ma_kernels::sliding_window_attention_forward`` and ``..._backward``:
  :func:`ma_kernels.sliding_window_attention`;
- ``ma_kernels::stream_inputs``: :func:`ma_kernels.stream_inputs`;
- ``ma_kernels::transformer_step``: :func:`ma_kernels.transformer_step`.
"""

from __future__ import annotations

import torch

from . import attention, book, book_stream, step, stream
from .attention import sliding_window_attention
from .book import book_features
from .book_stream import book_features_commit, book_features_step, book_tick_reasons
from .step import transformer_step
from .stream import stream_inputs

__all__ = ["book_features", "book_features_commit", "book_features_step", "book_tick_reasons",
           "sliding_window_attention", "stream_inputs", "transformer_step"]

_book_features = torch.library.custom_op(
    "ma_kernels::book_features", book.cpu_kernel, mutates_args=(), device_types="cpu"
)
_book_features.register_kernel("cuda", book.cuda_kernel)
_book_features.register_fake(book.fake)

_book_step = torch.library.custom_op(
    "ma_kernels::book_features_step", book_stream.step_cpu, mutates_args=(), device_types="cpu"
)
_book_step.register_kernel("cuda", book_stream.step_cuda)
_book_step.register_fake(book_stream.step_fake)

_book_commit = torch.library.custom_op(
    "ma_kernels::book_features_commit", book_stream.commit_cpu, mutates_args=("state",),
    device_types="cpu",
)
_book_commit.register_kernel("cuda", book_stream.commit_cuda)

_book_reasons = torch.library.custom_op(
    "ma_kernels::book_tick_reasons", book_stream.reasons_cpu, mutates_args=(), device_types="cpu"
)
_book_reasons.register_kernel("cuda", book_stream.reasons_cuda)
_book_reasons.register_fake(book_stream.reasons_fake)

_attention_forward = torch.library.custom_op(
    "ma_kernels::sliding_window_attention_forward", attention.forward_cpu, mutates_args=(),
    device_types="cpu",
)
_attention_forward.register_kernel("cuda", attention.forward_cuda)
_attention_forward.register_fake(attention.forward_fake)
_attention_forward.register_autograd(attention.autograd_backward,
                                     setup_context=attention.setup_context)

_attention_backward = torch.library.custom_op(
    "ma_kernels::sliding_window_attention_backward", attention.backward_cpu, mutates_args=(),
    device_types="cpu",
)
_attention_backward.register_kernel("cuda", attention.backward_cuda)
_attention_backward.register_fake(attention.backward_fake)

_transformer_step = torch.library.custom_op(
    "ma_kernels::transformer_step", step.cpu_kernel, mutates_args=("keys", "values", "pos"),
    device_types="cpu",
)
_transformer_step.register_kernel("cuda", step.cuda_kernel)
_transformer_step.register_fake(step.fake)

_stream_inputs = torch.library.custom_op(
    "ma_kernels::stream_inputs", stream.cpu_kernel, mutates_args=("state",), device_types="cpu"
)
_stream_inputs.register_kernel("cuda", stream.cuda_kernel)
_stream_inputs.register_fake(stream.fake)

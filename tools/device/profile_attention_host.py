"""Where an eager forward+backward spends its time, ours against the peers:
wall time per step, GPU kernel time per step, and the host operators that
take the rest (torch.profiler). ``--shape B,H,L,W,D`` (repeatable) picks shapes.
First, the host microseconds of each step of our forward's Python path;
The forward+backward lines end with floors: our node with a backward that
launches nothing, a Python node with q, k, v in and no kernel, an identity
node; ``--cpp-floor`` adds a C++ autograd node that allocates like ours and
launches nothing (built by torch's JIT extension loader, ~30 s)."""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from torch.profiler import ProfilerActivity, profile

import ma_kernels


def host_us(fn, calls: int = 2000) -> float:
    """Host microseconds per call, the GPU kept idle enough not to push back."""
    for _ in range(100):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class _ThreeInputs(torch.autograd.Function):
    """q, k, v in (three leaves to accumulate into, as attention has), a copy
    of q out, no kernel of ours: the floor of any Python node in their place."""

    @staticmethod
    def forward(ctx, q, k, v):
        return q.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, torch.empty_like(grad), torch.empty_like(grad)


class _NoBackwardKernel(ma_kernels.attention._EagerAttention):
    """Our eager node whose backward allocates dq, dk, dv and launches nothing."""

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dlse):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), *[None] * 4


# q, k, v in; out and lse allocated, saved; the backward allocates dq, dk, dv
# and delta. No kernel: what any C++ node with our signature costs the host.
_CPP_FLOOR = r"""
#include <torch/extension.h>
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
struct Floor : torch::autograd::Function<Floor> {
  static variable_list forward(AutogradContext* ctx, at::Tensor q, at::Tensor k, at::Tensor v) {
    auto out = at::empty_like(q);
    auto lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->mark_non_differentiable({lse});
    return {out, lse};
  }
  static variable_list backward(AutogradContext* ctx, variable_list) {
    auto s = ctx->get_saved_variables();
    at::empty_like(s[4]);  // delta
    return {at::empty_like(s[0]), at::empty_like(s[1]), at::empty_like(s[2])};
  }
};
at::Tensor floor_node(at::Tensor q, at::Tensor k, at::Tensor v) {
  return Floor::apply(q, k, v)[0];
}
"""


def cpp_floor():
    from torch.utils.cpp_extension import load_inline

    return load_inline("ma_host_floor", _CPP_FLOOR, functions=["floor_node"]).floor_node


def time_python_path(cpp_floor_node) -> None:
    from ma_kernels import _C, attention

    q, k, v = (torch.randn(1, 1, 64, 32, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out, lse = attention._forward_cuda(q, k, v, 8, 0, 1, 0.2)
    launch = (attention._problem(q, k, 8, 0, 1), 0.2, attention._strided(q),
              attention._strided(k), attention._strided(v), attention._strided(out),
              lse.data_ptr(), 3, 0, torch._C._cuda_getCurrentRawStream(0))
    pieces = {
        "torch.empty_like (reference)": lambda: torch.empty_like(q),
        "q.add_(0) (reference)": lambda: q.add_(0),
        "_check": lambda: attention._check(q, k, v, 8, 1, None),
        "_plain_eager": lambda: attention._plain_eager(q, k, v),
        "current raw stream": lambda: torch._C._cuda_getCurrentRawStream(0),
        "_C forward launch": lambda: _C.sliding_window_attention_forward_cuda(*launch),
        "_forward_cuda": lambda: attention._forward_cuda(q, k, v, 8, 0, 1, 0.2),
        "_EagerAttention.apply": lambda: attention._EagerAttention.apply(q, k, v, 8, 0, 1, 0.2),
        "the op, torch.ops": lambda: torch.ops.ma_kernels.sliding_window_attention_forward(
            q, k, v, 8, 0, 1, 0.2),
        "sliding_window_attention": lambda: ma_kernels.sliding_window_attention(q, k, v, 8),
        "SDPA causal (peer)": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    with torch.no_grad():
        for name, fn in pieces.items():
            print(f"{name:32s} {host_us(fn):7.1f} us host per call")
    dout = torch.randn_like(q)
    print(f"{'_backward_cuda':32s} "
          f"{host_us(lambda: attention._backward_cuda(q, k, v, out, dout, lse, 8, 0, 1, 0.2)):7.1f}"
          " us host per call")
    for t in (q, k, v):
        t.requires_grad_()
    # The autograd engine runs a CUDA backward on its device thread: a Python
    # backward node there must take the GIL from the waiting main thread.
    for name, fn in {
        "ours": lambda: ma_kernels.sliding_window_attention(q, k, v, 8),
        "SDPA causal (peer)": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "our node, no backward kernel": lambda: _NoBackwardKernel.apply(q, k, v, 8, 0, 1, 0.2)[0],
        "Python node, 3 inputs (floor)": lambda: _ThreeInputs.apply(q, k, v),
        "Python identity (floor)": lambda: _Identity.apply(q),
        **({"C++ node, no kernel (floor)": lambda: cpp_floor_node(q, k, v)}
           if cpp_floor_node else {}),
    }.items():
        print(f"{'fwd+bwd ' + name:32s} {host_us(lambda fn=fn: fn().backward(dout)):7.1f}"
              " us host per call")


def profile_shape(shape: str, steps: int, flex, trace_dir: str | None) -> None:
    batch, heads, length, window, head_dim = map(int, shape.split(","))
    q, k, v = (torch.randn(batch, heads, length, head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    dout = torch.randn_like(q)
    block_mask = create_block_mask(lambda b, h, i, j: (i >= j) & (i - j < window), None, None,
                                   length, length)
    runs = {
        "ma_kernels": lambda: ma_kernels.sliding_window_attention(q, k, v, window),
        "flex": lambda: flex(q, k, v, block_mask=block_mask),
        "sdpa_causal": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    for name, fn in runs.items():
        for _ in range(5):
            fn().backward(dout)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start.record()
            for _ in range(steps):
                fn().backward(dout)
            end.record()
            torch.cuda.synchronize()
        if trace_dir:  # the timeline: launches on the host against kernels on the GPU
            prof.export_chrome_trace(f"{trace_dir}/trace_{name}_{shape.replace(',', '_')}.json")
        events = prof.key_averages()
        gpu_us = sum(e.self_device_time_total for e in prof.events()) / steps
        print(f"\n=== {name} {shape}: wall {start.elapsed_time(end) / steps * 1e3:.0f} us "
              f"per fwd+bwd (under the profiler), GPU kernels {gpu_us:.0f} us")
        print(events.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", action="append")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trace-dir", help="write a Chrome trace of each run here")
    parser.add_argument("--cpp-floor", action="store_true")
    args = parser.parse_args()
    time_python_path(cpp_floor() if args.cpp_floor else None)
    flex = torch.compile(flex_attention)
    for shape in args.shape or ["16,4,1024,128,32", "16,4,4096,256,64"]:
        profile_shape(shape, args.steps, flex, args.trace_dir)

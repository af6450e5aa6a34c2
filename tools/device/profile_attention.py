"""One forward and one backward of the attention op at the training
benchmark's shape, bf16, for Nsight Compute (run.sh, PROFILE=1):
``ncu -k regex:"forward_kernel|dq_kernel|dkdv_kernel" python3 this_file``.
``--shape B,H,L,W,D`` picks another shape."""

import argparse

import torch

import ma_kernels

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--shape", default="16,4,4096,256,32")
batch, heads, length, window, head_dim = map(int, parser.parse_args().shape.split(","))
q, k, v = (torch.randn(batch, heads, length, head_dim, device="cuda", dtype=torch.bfloat16,
                       requires_grad=True) for _ in range(3))
ma_kernels.sliding_window_attention(q, k, v, window).backward(torch.randn_like(q))
torch.cuda.synchronize()

import pytest
import torch

import ma_kernels

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device (or ma_kernels built without CUDA)")
    if not (ma_kernels.cuda_available() and torch.cuda.is_available()):
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-column relative norm error ||out - ref|| / ||ref|| (columns differ in scale)."""
    out = out.detach().to("cpu", torch.float64)
    return (out - ref).norm(dim=0) / ref.norm(dim=0).clamp_min(1e-300)

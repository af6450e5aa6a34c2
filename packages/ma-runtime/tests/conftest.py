import pytest
import torch

import ma_kernels


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() and ma_kernels.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (or ma_kernels built without CUDA)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

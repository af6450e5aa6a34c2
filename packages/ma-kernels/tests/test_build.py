import pytest
import torch

import ma_kernels
from ma_kernels import _checks


def test_public_api_is_exported():
    for name in ma_kernels.__all__:
        assert hasattr(ma_kernels, name), name


def test_cuda_flags_are_consistent():
    assert isinstance(ma_kernels.has_cuda(), bool)
    if ma_kernels.cuda_available():
        assert ma_kernels.has_cuda()


def test_cuda_tensor_without_cuda_kernels_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_checks._C, "with_cuda", False)
    cuda_like = type("CudaLike", (), {"device": torch.device("cuda", 0), "is_cuda": True})()
    with pytest.raises(ValueError, match="no CUDA kernels"):
        _checks.check_device("book", cuda_like)


def test_unsupported_device_is_a_clear_error():
    other = type("Other", (), {"device": torch.device("xpu", 0), "is_cuda": False,
                               "is_cpu": False, "is_meta": False})()
    with pytest.raises(ValueError, match="runs on cpu and cuda"):
        _checks.check_device("book", other)

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


def check_graph_capture_and_side_stream(op, make_input) -> None:
    """``op`` on a side stream and replayed from a CUDA graph on fresh input
    gives what a plain call on the default stream gives."""
    x = make_input()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        on_side = op(x)
    side.synchronize()
    graph = torch.cuda.CUDAGraph()
    static_x = x.clone()
    with torch.cuda.graph(graph):
        static_out = op(static_x)
    fresh = make_input()
    static_x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(static_out, op(fresh))
    torch.testing.assert_close(on_side, op(x))

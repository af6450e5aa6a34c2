import pytest
import torch
from books import random_book
from conftest import DEVICES, check_graph_capture_and_side_stream, relative_error

import ma_kernels
from ma_kernels import ops, reference

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture
def poisoned(monkeypatch):
    """Makes the op allocate its output filled with NaN, so a row the kernel
    fails to write shows up instead of passing as stale memory."""
    monkeypatch.setattr(
        ops,
        "_empty_features",
        lambda book: torch.full(
            (book.shape[0], len(ma_kernels.L1_FEATURES)),
            float("nan"),
            dtype=book.dtype,
            device=book.device,
        ),
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 255, 4097, 200_003])
def test_matches_float64_reference(poisoned, device, dtype, n):
    book = random_book(n, dtype=dtype, device=device)
    out = ma_kernels.l1_features(book)
    assert out.shape == (n, 5) and out.dtype == dtype and out.device == book.device
    assert not out.isnan().any()
    err = relative_error(out, reference.l1_features(book))
    assert (err <= TOLERANCE[dtype]).all(), dict(
        zip(ma_kernels.L1_FEATURES, err.tolist(), strict=True)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views(poisoned, device):
    book = random_book(1000, dtype=torch.float64, device=device)
    table = torch.cat([book, torch.randn(1000, 3, dtype=torch.float64, device=device)], dim=1)
    views = {
        "column slice": table[:, :4],  # row stride 7
        "column-major": book.T.contiguous().T,
        "every other row": book[::2],
    }
    for name, view in views.items():
        out = ma_kernels.l1_features(view).cpu()
        assert torch.allclose(out, reference.l1_features(view), rtol=1e-12, atol=1e-12), name


def test_hand_computed_row():
    book = torch.tensor(
        [[99.99, 300.0, 100.01, 100.0], [100.00, 50.0, 100.02, 10.0]], dtype=torch.float64
    )
    out = ma_kernels.l1_features(book)
    spread, mid, micro, imb, ofi = out[1].tolist()
    assert spread == pytest.approx(0.02)
    assert mid == pytest.approx(100.01)
    assert micro == pytest.approx((100.00 * 10 + 100.02 * 50) / 60)
    assert imb == pytest.approx(40 / 60)
    # bid up: +50 new bid size; ask up: +100 of the old ask size was consumed.
    assert ofi == pytest.approx(50 + 100)
    assert out[0, 4] == 0.0


def test_empty_book_policy():
    book = torch.tensor([[10.0, 0.0, 10.2, 0.0]])
    spread, mid, micro, imb, ofi = ma_kernels.l1_features(book)[0].tolist()
    assert micro == pytest.approx(mid) and imb == 0.0


def test_empty_input():
    assert ma_kernels.l1_features(torch.empty(0, 4)).shape == (0, 5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(5, 3), "size 4 in dimension 1"),
        (torch.zeros(5), "2 dimensions"),
        (torch.zeros(5, 4, dtype=torch.int64), "dtype float32, float64"),
        (torch.zeros(5, 4, dtype=torch.bfloat16), "dtype"),
        ([[1.0, 2.0, 3.0, 4.0]], "torch.Tensor"),
    ],
)
def test_bad_input_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        ma_kernels.l1_features(bad)


def test_opcheck():
    book = random_book(64, dtype=torch.float64)
    torch.library.opcheck(torch.ops.ma_kernels.l1_features.default, (book,))


@pytest.mark.gpu
def test_opcheck_cuda():
    book = random_book(64, device="cuda")
    torch.library.opcheck(torch.ops.ma_kernels.l1_features.default, (book,))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    book = random_book(300, device=device)
    compiled = torch.compile(lambda b: ma_kernels.l1_features(b) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(book), ma_kernels.l1_features(book) * 2)


@pytest.mark.gpu
def test_cuda_graph_capture_and_side_stream():
    check_graph_capture_and_side_stream(
        ma_kernels.l1_features, lambda: random_book(10_000, device="cuda")
    )


@pytest.mark.gpu
def test_cpu_and_gpu_agree():
    book = random_book(100_000, dtype=torch.float64)
    torch.testing.assert_close(
        ma_kernels.l1_features(book.cuda()).cpu(),
        ma_kernels.l1_features(book),
        rtol=1e-12,
        atol=1e-12,
    )

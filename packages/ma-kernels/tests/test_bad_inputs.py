"""Bad operands into the ops: any rank, dtype, stride and device. Each is a
ValueError naming the operand, or (for valid operands) the float64
reference's answer; a kernel never reads memory it was not given
(docs/reliability.md)."""

import pytest
import torch
from books import random_series
from hypothesis import given, settings
from hypothesis import strategies as st

import ma_kernels
from ma_kernels import attention, reference

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.bool, torch.complex64]
NAMES = ("q", "k", "v")


@st.composite
def operands(draw):
    """q, k, v of random rank, dtype and layout, near the op's contract."""
    rank = draw(st.integers(1, 5))
    shape = [draw(st.integers(1, 3)) for _ in range(rank)]
    base = torch.randn(*shape, dtype=torch.float64)
    tensors = []
    for _ in NAMES:
        t = base.to(draw(st.sampled_from(DTYPES)))
        if rank >= 2 and draw(st.booleans()):  # a transposed view: strided, maybe not along D
            t = t.transpose(-1, -2)
        tensors.append(t)
    return tensors


@settings(max_examples=200, deadline=None)
@given(qkv=operands(), window=st.integers(1, 4), meta=st.sampled_from([None, 0, 1, 2]))
def test_any_operands_are_refused_by_name_or_computed_as_the_reference(qkv, window, meta):
    if meta is not None:
        qkv[meta] = qkv[meta].to("meta")
    try:
        out = ma_kernels.sliding_window_attention(*qkv, window)
    except ValueError as e:
        assert str(e).split(" ")[0].strip(",") in (*NAMES, "q,", "k"), str(e)
        return
    if out.is_meta:  # all three on meta: shapes only, for tracing
        assert all(t.is_meta for t in qkv) and out.shape == qkv[0].shape
        return
    expected = reference.sliding_window_attention(*(t.double() for t in qkv), window)
    tolerance = 1e-2 if qkv[0].dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("device", ["meta", "cuda"] if torch.cuda.is_available() else ["meta"])
def test_the_cpu_kernels_refuse_other_devices(device):
    q = torch.randn(1, 2, 8, 4, device=device)
    with pytest.raises(ValueError, match=f"q is on {device}.*, but this is the CPU kernel"):
        attention.forward_cpu(q, q, q, 2, 0, 1, 0.5)
    lse = torch.zeros(1, 2, 8, device=device)
    with pytest.raises(ValueError, match=f"q is on {device}.*, but this is the CPU kernel"):
        attention.backward_cpu(q, q, q, q, q, lse, 2, 0, 1, 0.5)


def _series(n=16):
    return random_series(n, 3, seed=1)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(bid_price=s["bid_price"][:, 0]), r"bid_price must be \[N, K\]"),
    (lambda s: s.update(bid_price=s["bid_price"][:, :0]), r"bid_price must be \[N, K\]"),
    (lambda s: s.update(bid_price=s["bid_price"].int()), "prices must be float32 or float64"),
    (lambda s: s.update(ask_size=s["ask_size"].float()), "ask_size must have dtype"),
    (lambda s: s.update(time=s["time"].int()), "time must have dtype torch.int64"),
    (lambda s: s.update(trade_side=s["trade_side"].long()), "trade_side must have dtype"),
    (lambda s: s.update(ask_price=s["ask_price"][:-1]), r"ask_price must have shape \(16, 3\)"),
    (lambda s: s.update(trade_size=s["trade_size"].to("meta")), "trade_size is on meta"),
    (lambda s: s.update(time=s["time"].tolist()), "time must be a torch.Tensor"),
])
def test_book_features_names_the_bad_column(change, message):
    series = _series()
    change(series)
    with pytest.raises(ValueError, match=message):
        ma_kernels.book_features(**series)


def test_book_features_takes_strided_columns_as_their_values():
    series = _series()
    wide = {k: (torch.stack([v, v], -1)[..., 0] if v.dim() == 2 else v) for k, v in series.items()}
    assert not wide["bid_price"].is_contiguous()
    torch.testing.assert_close(ma_kernels.book_features(**wide), ma_kernels.book_features(**series))

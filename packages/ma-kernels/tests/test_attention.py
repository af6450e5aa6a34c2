import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from torch.autograd import forward_ad
from torch.utils._python_dispatch import TorchDispatchMode

import ma_kernels
from ma_kernels import attention, reference

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2,
             torch.bfloat16: 1e-2}

# (B, H, H_kv, L, D, window, dilation): L off any tile multiple, L < window,
# window 1, dilation > 1, a single query, two-sided windows, GQA, many heads.
CASES = {
    "L not a tile multiple": (2, 4, 4, 100, 32, 16, 1),
    "L < window": (1, 2, 2, 7, 64, 20, 1),
    "window 1": (1, 2, 2, 33, 32, 1, 1),
    "dilation 3": (2, 2, 2, 77, 32, 8, 3),
    "dilation > L": (1, 1, 1, 9, 32, 4, 16),
    "single query": (1, 1, 1, 1, 64, 4, 1),
    "two-sided, GQA": (2, 4, 2, 50, 32, (5, 3), 2),
    "right only": (1, 2, 1, 40, 128, (1, 6), 1),
    "large B*H": (16, 16, 16, 24, 32, 6, 1),
    "D 128, long band": (1, 2, 2, 300, 128, 130, 1),
}


@pytest.fixture
def poisoned(monkeypatch):
    """Every buffer the op allocates starts as NaN, so an element the kernel
    fails to write shows up instead of passing as stale memory."""
    monkeypatch.setattr(attention, "_empty", lambda like, shape, dtype: torch.full(
        shape, float("nan"), dtype=dtype, device=like.device))


def qkv(batch, heads, kv_heads, length, head_dim, *, dtype=torch.float32, device="cpu"):
    def make(h):
        return torch.randn(batch, h, length, head_dim, dtype=dtype, device=device)
    return make(heads), make(kv_heads), make(kv_heads)


def relative_error(out: torch.Tensor, ref: torch.Tensor, *, floor: float = 1e-300) -> float:
    out = out.detach().to("cpu", torch.float64)
    return ((out - ref).norm() / ref.norm().clamp_min(floor)).item()


def check_against_reference(q, k, v, window, dilation, scale=None):
    """Forward, lse and every gradient of the op against the float64 reference."""
    tol = TOLERANCE[q.dtype]
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = ma_kernels.sliding_window_attention(*leaves, window, dilation=dilation, scale=scale)
    dout = torch.randn_like(out)
    out.backward(dout)
    assert out.dtype == q.dtype and out.shape == q.shape and out.device == q.device
    left, right = reference.normalize_window(window)
    scale_ = q.shape[-1] ** -0.5 if scale is None else scale
    _, lse = torch.ops.ma_kernels.sliding_window_attention_forward(
        q, k, v, left, right, dilation, scale_)
    ref_out, ref_lse = reference.sliding_window_attention(
        q, k, v, window, dilation, scale, return_lse=True)
    grads = reference.sliding_window_attention_backward(q, k, v, dout, window, dilation, scale)
    results = {"out": (out, ref_out), "lse": (lse, ref_lse)}
    for name, t, g in zip(("dq", "dk", "dv"), leaves, grads, strict=True):
        results[name] = (t.grad, g)
    for name, (got, want) in results.items():
        assert not got.isnan().any(), name
        # lse is a logarithm: where its values are below 1 (a single query
        # whose score is near 0), its absolute error is what matters.
        floor = want.numel() ** 0.5 if name == "lse" else 1e-300
        err = relative_error(got, want, floor=floor)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_float64_reference(poisoned, device, dtype, case):
    *shape, window, dilation = case
    check_against_reference(*qkv(*shape, dtype=dtype, device=device), window, dilation)


def test_cpu_rows_split_across_threads(poisoned, monkeypatch):
    """The CPU kernels split rows into chunks of ~4M multiply-adds, so the small
    cases above run on one thread; this one is cut into 8 chunks on 7 threads
    (query rows for the forward and dq, GQA key rows for dk and dv)."""
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "7")
    check_against_reference(*qkv(2, 4, 2, 1024, 64, dtype=torch.float64), 64, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ["L not a tile multiple", "dilation 3", "two-sided, GQA"])
def test_16bit_matches_reference(poisoned, device, dtype, case):
    *shape, window, dilation = CASES[case]
    check_against_reference(*qkv(*shape, dtype=dtype, device=device), window, dilation)


# The tiled kernels (tensor-core 16-bit, CUDA-core fp32 forward) work on tiles
# of 64 queries and 64 (or 32) keys in each residue class of the dilation: L
# around tile multiples, windows that are not, windows past L, bands crossing
# many tiles, GQA, many blocks.
TILE_CASES = {
    "L 63": (2, 2, 2, 63, 64, 20, 1),
    "L 64, W 64": (1, 2, 2, 64, 64, 64, 1),
    "L 65, W 65": (1, 2, 1, 65, 32, 65, 1),
    "L 127, W 50": (1, 2, 2, 127, 128, 50, 1),
    "L 128, W 128": (1, 2, 2, 128, 64, 128, 1),
    "L 129, W 200 > L": (1, 2, 2, 129, 64, 200, 1),
    "L 257, W 129, D 32": (1, 2, 2, 257, 32, 129, 1),
    "two-sided (100, 37), L 300": (1, 2, 2, 300, 64, (100, 37), 1),
    "right only (1, 70), D 128": (1, 1, 1, 200, 128, (1, 70), 1),
    "dilation 2, L 257": (1, 2, 2, 257, 32, 70, 2),
    "dilation 5, GQA 4:1": (1, 4, 1, 400, 64, 30, 5),
    "B*H 512": (32, 16, 16, 65, 32, 17, 1),
    "D 128, L 1000, W 300": (1, 1, 1, 1000, 128, 300, 1),
}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("case", TILE_CASES.values(), ids=TILE_CASES.keys())
def test_tile_boundaries(poisoned, dtype, case):
    *shape, window, dilation = case
    check_against_reference(*qkv(*shape, dtype=dtype, device="cuda"), window, dilation)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rows_off_16_byte_boundaries(poisoned, dtype):
    """q starting one element into its storage: forward and dq still right."""
    shape = (2, 3, 70, 64)
    flat = torch.randn(2 * 3 * 70 * 64 + 1, dtype=dtype, device="cuda", requires_grad=True)
    q = flat[1:].view(shape)
    assert q.data_ptr() % 16
    _, k, v = qkv(*shape[:2], *shape[1:], dtype=dtype, device="cuda")
    out = ma_kernels.sliding_window_attention(q, k, v, 33)
    dout = torch.randn_like(out)
    out.backward(dout)
    ref = reference.sliding_window_attention(q.detach(), k, v, 33, 1, None)
    dq, _, _ = reference.sliding_window_attention_backward(q.detach(), k, v, dout, 33, 1, None)
    assert relative_error(out, ref) <= TOLERANCE[dtype]
    assert relative_error(flat.grad[1:].view(shape), dq) <= TOLERANCE[dtype]


def test_any_head_dim_and_scale_on_cpu(poisoned):
    check_against_reference(*qkv(2, 3, 1, 45, 5), (4, 2), 2, scale=0.3)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views(poisoned, device):
    """q, k, v sliced out of one fused projection, [B, L, 3, H, D] permuted."""
    fused = torch.randn(2, 60, 3, 4, 32, device=device)
    q, k, v = fused.permute(2, 0, 3, 1, 4).unbind(0)
    assert not q.is_contiguous()
    check_against_reference(q, k, v, 10, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_window_covering_everything_is_dense_attention(device):
    """An oracle independent of ours: SDPA, causal and not."""
    q, k, v = qkv(2, 2, 2, 40, 32, dtype=torch.float64, device=device)
    causal = ma_kernels.sliding_window_attention(q, k, v, 40)
    full = ma_kernels.sliding_window_attention(q, k, v, (40, 39))
    torch.testing.assert_close(causal, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(full, F.scaled_dot_product_attention(q, k, v))


def test_dilation_is_a_strided_subsequence():
    """Dilation d on L = n*d equals window attention on each residue class."""
    q, k, v = qkv(1, 2, 2, 48, 32, dtype=torch.float64)
    out = ma_kernels.sliding_window_attention(q, k, v, 5, dilation=3)
    for r in range(3):
        sub = ma_kernels.sliding_window_attention(q[:, :, r::3], k[:, :, r::3], v[:, :, r::3], 5)
        torch.testing.assert_close(out[:, :, r::3], sub)


def test_empty_batch():
    q, k, v = qkv(0, 2, 2, 16, 32)
    assert ma_kernels.sliding_window_attention(q, k, v, 4).shape == (0, 2, 16, 32)


def test_opcheck():
    q, k, v = qkv(2, 4, 2, 19, 32, dtype=torch.float64)
    for t in (q, k, v):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.ma_kernels.sliding_window_attention_forward.default,
                          (q, k, v, 4, 1, 2, 0.2))


@pytest.mark.gpu
def test_opcheck_cuda():
    q, k, v = qkv(2, 4, 2, 19, 32, device="cuda")
    for t in (q, k, v):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.ma_kernels.sliding_window_attention_forward.default,
                          (q, k, v, 4, 1, 2, 0.2))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    q, k, v = (t.requires_grad_() for t in qkv(2, 2, 2, 50, 32, device=device))

    def loss(q, k, v):
        return (ma_kernels.sliding_window_attention(q, k, v, 8, dilation=2) ** 2).sum()

    compiled = torch.compile(loss, fullgraph=True)
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    want = torch.autograd.grad(loss(q, k, v), (q, k, v))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("device", DEVICES)
def test_eager_path_equals_the_ops(device):
    """Plain eager mode runs the kernels without the ops' dispatch; the ops
    (what compile, export and dispatch modes see) give the same bits."""
    q, k, v = (t.requires_grad_() for t in qkv(2, 4, 2, 50, 32, device=device))
    out = ma_kernels.sliding_window_attention(q, k, v, (5, 2), dilation=2)
    via_op, _ = torch.ops.ma_kernels.sliding_window_attention_forward(q, k, v, 5, 2, 2, 32**-0.5)
    assert "EagerAttention" in type(out.grad_fn).__name__
    assert "EagerAttention" not in type(via_op.grad_fn).__name__
    assert torch.equal(out, via_op)
    with torch.no_grad():  # nothing to record: the forward kernel alone
        assert torch.equal(ma_kernels.sliding_window_attention(q, k, v, (5, 2), dilation=2), out)
    dout = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, (q, k, v), dout),
                         torch.autograd.grad(via_op, (q, k, v), dout), strict=True):
        assert torch.equal(got, want)


def test_forward_mode_ad_is_refused():
    """No forward-mode rule: dual tensors and jvp get an error, not a zero tangent."""
    q, k, v = qkv(1, 2, 2, 16, 8)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(q, torch.randn_like(q))
        with pytest.raises(NotImplementedError, match="forward-mode"):
            ma_kernels.sliding_window_attention(dual, k, v, 4)
        # Plain tensors inside a dual level still run.
        assert torch.equal(ma_kernels.sliding_window_attention(q, k, v, 4),
                           ma_kernels.sliding_window_attention(q, k, v, 4))
    with pytest.raises(NotImplementedError, match="forward-mode"):
        torch.func.jvp(lambda q: ma_kernels.sliding_window_attention(q, k, v, 4), (q,),
                       (torch.randn_like(q),))


def test_dispatch_modes_see_the_ops():
    class OpLog(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func.overloadpacket._qualified_op_name)
            return func(*args, **(kwargs or {}))

    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 2, 20, 32))
    with OpLog() as log:
        ma_kernels.sliding_window_attention(q, k, v, 4).sum().backward()
    assert {"ma_kernels::sliding_window_attention_forward",
            "ma_kernels::sliding_window_attention_backward"} <= log.ops


@pytest.mark.gpu
def test_cuda_graph_capture():
    q, k, v = qkv(2, 4, 4, 256, 64, device="cuda")
    graph = torch.cuda.CUDAGraph()
    static = [t.clone() for t in (q, k, v)]
    ma_kernels.sliding_window_attention(*static, 32)  # warm up outside the capture
    with torch.cuda.graph(graph):
        static_out = ma_kernels.sliding_window_attention(*static, 32)
    fresh = qkv(2, 4, 4, 256, 64, device="cuda")
    for s, f in zip(static, fresh, strict=True):
        s.copy_(f)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(static_out, ma_kernels.sliding_window_attention(*fresh, 32))


def _bad(**changes):
    args = dict(zip("qkv", qkv(1, 4, 2, 8, 32), strict=True), window=4, dilation=1, scale=None)
    return args | changes


@pytest.mark.parametrize(
    "args, message",
    [
        (_bad(q=torch.zeros(4, 8, 32)), "4 dimensions"),
        (_bad(k=[[1.0]]), "torch.Tensor"),
        (_bad(v=torch.zeros(1, 2, 8, 32, dtype=torch.int32)), "float32, float64"),
        (_bad(k=torch.zeros(1, 2, 8, 32, dtype=torch.float64)), "share a dtype"),
        (_bad(v=torch.zeros(1, 2, 9, 32)), "same shape"),
        (_bad(k=torch.zeros(1, 2, 9, 32), v=torch.zeros(1, 2, 9, 32)), "like q"),
        (_bad(k=torch.zeros(1, 3, 8, 32), v=torch.zeros(1, 3, 8, 32)), "divide q's heads"),
        (_bad(q=torch.zeros(1, 4, 8, 64)[..., ::2]), "contiguous along D"),
        (_bad(q=torch.zeros(1, 4, 8, 0), k=torch.zeros(1, 2, 8, 0), v=torch.zeros(1, 2, 8, 0)),
         "head dim"),
        (_bad(window=0), "left >= 1"),
        (_bad(window=(2, -1)), "right >= 0"),
        (_bad(window=2.5), "int or a"),
        (_bad(window=(1, 2, 3)), "int or a"),
        (_bad(dilation=0), "dilation"),
        (_bad(scale=float("nan")), "scale"),
    ],
)
def test_bad_input_names_the_problem(args, message):
    window, dilation, scale = args.pop("window"), args.pop("dilation"), args.pop("scale")
    with pytest.raises(ValueError, match=message):
        ma_kernels.sliding_window_attention(**args, window=window, dilation=dilation, scale=scale)


@pytest.mark.gpu
def test_unsupported_cuda_head_dim():
    q, k, v = qkv(1, 1, 1, 8, 48, device="cuda")
    with pytest.raises(ValueError, match="head dim 48"):
        ma_kernels.sliding_window_attention(q, k, v, 4)


@pytest.mark.gpu
def test_cuda_length_limit():
    # A stride-0 view: 2^30 rows without the memory (the check comes first).
    q = torch.zeros(1, 1, 1, 32, device="cuda", dtype=torch.bfloat16).expand(1, 1, 2**30, 32)
    with pytest.raises(ValueError, match="too long for the CUDA kernels"):
        ma_kernels.sliding_window_attention(q, q, q, 4)


@pytest.mark.gpu
def test_mixed_devices():
    q, k, v = qkv(1, 1, 1, 8, 32)
    with pytest.raises(ValueError, match="share a device"):
        ma_kernels.sliding_window_attention(q.cuda(), k, v, 4)

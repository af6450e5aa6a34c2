import itertools
import math

import pytest
import torch
from books import random_series
from conftest import DEVICES, check_graph_capture_and_side_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ma_kernels
from ma_kernels import book as module
from ma_kernels import reference

FULL = {"depth_imbalance": (1, 2, 4), "ofi_levels": 4, "windows": (1, 7, 100),
        "time_windows": (1, 5, 40)}
# Relative to each column's largest value: float64 is a few ulps of the
# reference's own prefix sums; float32 one rounding of each output.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-10}


@pytest.fixture
def poisoned(monkeypatch):
    """Outputs start as NaN, so a row the kernel fails to write cannot pass."""
    empty = module._empty
    monkeypatch.setattr(module, "_empty", lambda *a: empty(*a).fill_(torch.nan))


def column_errors(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    out = out.detach().to("cpu", torch.float64)
    scale = ref.abs().amax(0).clamp_min(1e-300)
    return ((out - ref).abs() / (ref.abs() + scale)).amax(0)


def assert_matches_reference(series, dtype=None, **spec):
    out = ma_kernels.book_features(**series, dtype=dtype, **spec)
    ref = reference.book_features(**series, **spec)
    dtype = dtype or series["bid_price"].dtype
    assert out.shape == ref.shape and out.dtype == dtype
    assert out.device == series["time"].device and out.is_contiguous()
    assert not out.isnan().any()
    err = column_errors(out, ref)
    assert (err <= TOLERANCE[dtype]).all(), err.tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 300, 2999])
def test_every_column_matches_float64_reference(poisoned, device, dtype, n):
    series = random_series(n, 4, device=device)
    assert_matches_reference(series, dtype, **FULL)


# Specs whose windows are all event windows reaching at most 256 rows back:
# CUDA computes them in one pass (near_window_kernel) where a tile's whole
# rows fit shared memory, in tiles as long as the reach leaves (512 rows at
# 256, 664 at the ANCHORS window of 100, 760 at 10); a window reaching 257
# rows back takes the general path.
EVENT_WINDOWS_ONLY = {
    "anchors-like": {"instant": ("spread", "mid", "microprice", "imbalance", "ofi"),
                     "rolling": ("ofi", "vwap", "realized_variance"), "windows": (7, 257)},
    "anchors": {"instant": ("spread", "mid", "microprice", "imbalance", "ofi"),
                "rolling": ("ofi", "vwap", "realized_variance"), "windows": (100,)},
    "short": {"instant": ("mid_change", "log_depth"), "rolling": ("signed_volume",),
              "windows": (2, 10)},
    "wide": {"depth_imbalance": (1, 2), "ofi_levels": 2, "windows": (1, 100, 257)},
    "past the halo": {"windows": (3, 258)},
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", EVENT_WINDOWS_ONLY.values(), ids=EVENT_WINDOWS_ONLY.keys())
@pytest.mark.parametrize("n", [1, 300, 2999, 20_003])
def test_event_windows_only(poisoned, device, dtype, spec, n):
    series = random_series(n, 3, device=device, seed=n)
    assert_matches_reference(series, dtype, **spec)


@st.composite
def specs(draw) -> dict:
    """Any spec over 4 levels: instant and rolling subsets in any order, event
    windows on both sides of CUDA's 256-row halo, time windows (random_series'
    gaps are 0-3 ns) now and then: every kernel path, chosen by the spec."""
    def subset(names):
        return tuple(draw(st.permutations(names))[: draw(st.integers(0, len(names)))])

    def windows(most):
        return draw(st.lists(st.integers(1, most), max_size=3, unique=True).map(tuple))

    return {"instant": subset(ma_kernels.BOOK_INSTANT_FEATURES),
            "rolling": subset(ma_kernels.BOOK_ROLLING_FEATURES),
            "depth_imbalance": tuple(draw(st.lists(st.integers(1, 4), max_size=2, unique=True))),
            "ofi_levels": draw(st.integers(0, 4)), "windows": windows(600),
            "time_windows": windows(2000) if draw(st.booleans()) else ()}


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs(), n=st.integers(1, 3000), seed=st.integers(0, 2**31 - 1), wide=st.booleans())
def test_any_spec_matches_the_reference(poisoned, device, spec, n, seed, wide):
    series = random_series(n, 4, device=device, seed=seed)
    assert_matches_reference(series, torch.float64 if wide else torch.float32, **spec)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_ticks_to_float32_features(poisoned, device):
    """The output dtype is the caller's: float64 prices are read as float64."""
    series = random_series(2000, 4, device=device)
    assert_matches_reference(series, torch.float32, **FULL)
    wide = ma_kernels.book_features(**series, **FULL)
    narrow = ma_kernels.book_features(**series, dtype=torch.float32, **FULL)
    torch.testing.assert_close(narrow, wide.float(), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_many_rows_across_threads_and_chunks(poisoned, monkeypatch, device):
    """Chunks (threads on the CPU, tiles on CUDA) start with the rows their
    windows reach back to: any split gives the reference's numbers."""
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "7")
    series = random_series(200_003, 3, device=device, seed=4)
    # 20000 rows is beyond the CPU memo of terms (8192 rows): those are recomputed;
    # 200 ms is ~4000 rows, tiles that CUDA adds whole from their totals.
    assert_matches_reference(series, ofi_levels=3, windows=(1, 100, 20_000),
                             time_windows=(7, 3000, 200_000_000))


@pytest.mark.parametrize("device", DEVICES)
def test_windows_a_ring_of_tiles_reaches_and_beyond(poisoned, device):
    """Windows of a few thousand events: CUDA sums them from the last six
    tiles of 512 rows each block keeps (its ring), where every start of a
    tile lies inside, and recomputes the other tiles in the general kernel.
    The second half's events come six times as fast, so its 3000 ns window
    reaches past the ring while the first half's stays inside; the blocks
    walk about 15 tiles each."""
    series = random_series(1_000_003, 2, device=device, seed=14)
    gaps = series["time"].diff(prepend=series["time"][:1])
    gaps[len(gaps) // 2:] = gaps[len(gaps) // 2:] // 3
    series["time"] = gaps.cumsum(0)
    assert_matches_reference(series, torch.float32, ofi_levels=2, windows=(10, 700, 2500),
                             time_windows=(100, 3000))


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views(poisoned, device):
    """Every-other-row views and a book sliced from a deeper one, without copies."""
    series = random_series(3000, 6, device=device, seed=7)
    views = {k: v[::2] for k, v in series.items()}
    views.update({k: series[k][::2, :3] for k in ("bid_price", "bid_size", "ask_price",
                                                   "ask_size")})
    assert not views["bid_price"].is_contiguous() and not views["time"].is_contiguous()
    assert_matches_reference(views, **FULL | {"depth_imbalance": (1, 3), "ofi_levels": 3})


def test_level_one_quotes_read_in_place(poisoned):
    """The CPU reads level-1 float64 quotes one row apart where they are,
    other layouts through a copy: both give the reference's numbers and
    each other's exactly."""
    series = random_series(5000, 1, seed=13)
    spec = {"instant": ma_kernels.BOOK_INSTANT_FEATURES, "rolling": ()}
    assert_matches_reference(series, **spec)
    book = ("bid_price", "bid_size", "ask_price", "ask_size")
    strided = {k: torch.cat([v, v], 1)[:, :1] if k in book else v for k, v in series.items()}
    assert strided["bid_price"].stride() == (2, 1)
    torch.testing.assert_close(ma_kernels.book_features(**strided, **spec),
                               ma_kernels.book_features(**series, **spec), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_wide_spec(poisoned, device):
    """A spec too wide to stage a step's rows in shared memory on CUDA (rows
    go straight to global memory there)."""
    series = random_series(3000, 90, device=device, seed=11)
    assert_matches_reference(series, torch.float32, ofi_levels=90, windows=(5, 300),
                             time_windows=(9,))


def test_no_drift_over_millions_of_rows():
    """Window sums as accurate at row 3M as at the start: the CPU re-sums each
    window at intervals, CUDA sums within chunks (against the reference's one
    float64 prefix sum)."""
    series = random_series(3_000_000, 1, seed=12)
    spec = {"instant": (), "windows": (100, 5000), "time_windows": (300,)}
    out = ma_kernels.book_features(**series, **spec)[-2000:]
    ref = reference.book_features(**series, **spec)[-2000:]
    assert (column_errors(out, ref) <= TOLERANCE[torch.float64]).all()


def test_thread_count_does_not_matter(monkeypatch):
    series = random_series(100_000, 2, seed=5)
    spec = {"ofi_levels": 2, "windows": (3, 700)}
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "1")
    one = ma_kernels.book_features(**series, **spec)
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "5")
    torch.testing.assert_close(ma_kernels.book_features(**series, **spec), one,
                               rtol=1e-12, atol=1e-9)


def test_windows_longer_than_the_series_and_one_event():
    series = random_series(500, 1, seed=6)
    long = ma_kernels.book_features(**series, windows=(10**15,), time_windows=(2**62,))
    short = ma_kernels.book_features(**series, windows=(500,), time_windows=(10**6,))
    torch.testing.assert_close(long, short, rtol=0, atol=0)


def test_hand_computed_rows():
    series = {
        "time": torch.tensor([0, 10, 10, 25]),
        "bid_price": torch.tensor([[99.99, 99.98], [100.00, torch.nan], [100.00, 99.99],
                                   [100.01, 100.00]], dtype=torch.float64),
        "bid_size": torch.tensor([[300.0, 20.0], [50.0, 0.0], [50.0, 30.0], [40.0, 10.0]],
                                 dtype=torch.float64),
        "ask_price": torch.tensor([[100.01, 100.02]] * 2 + [[100.02, 100.03]] * 2,
                                  dtype=torch.float64),
        "ask_size": torch.tensor([[100.0, 5.0], [100.0, 5.0], [10.0, 5.0], [10.0, 5.0]],
                                 dtype=torch.float64),
        "trade_price": torch.tensor([0.0, 100.01, 100.00, 0.0], dtype=torch.float64),
        "trade_size": torch.tensor([0.0, 5.0, 15.0, 0.0], dtype=torch.float64),
        "trade_side": torch.tensor([0, 1, -1, 0], dtype=torch.int8),
    }
    out = ma_kernels.book_features(
        **series, instant=("signed_volume", "inter_arrival"), depth_imbalance=(2,),
        ofi_levels=2, rolling=("ofi", "signed_volume", "vwap"), windows=(2,),
        time_windows=(10,),
    )
    signed, gap, depth2, ofi1, ofi2, mlofi, *rolling = out.T
    w_ofi, w_signed, w_vwap, t_ofi, t_signed, t_vwap = rolling
    assert signed.tolist() == [0.0, 5.0, -15.0, 0.0]
    assert gap.tolist() == pytest.approx([0.0, 1e-8, 0.0, 1.5e-8])
    assert depth2[0] == pytest.approx((320 - 105) / 425)
    # Row 1: the best bid rises (its new size counts) and level 2 empties (-20);
    # row 2: the ask rises (its old size leaves, +100) and level 2 reappears (+30, +5).
    assert ofi1.tolist() == pytest.approx([0.0, 50.0, 100.0, 40.0])
    assert ofi2.tolist() == pytest.approx([0.0, -20.0, 35.0, 10.0])
    assert mlofi.tolist() == pytest.approx((ofi1 + ofi2).tolist())
    assert w_ofi.tolist() == pytest.approx([0.0, 50.0, 150.0, 140.0])
    assert w_signed.tolist() == pytest.approx([0.0, 5.0, -10.0, -15.0])
    assert w_vwap[0] == pytest.approx(100.0)  # no trade yet: the mid
    assert w_vwap[2] == pytest.approx((100.01 * 5 + 100.00 * 15) / 20)
    assert w_vwap[3] == pytest.approx(100.00)
    # Time window of 10 ns: rows with time > time[t] - 10; rows 1 and 2 tie at 10.
    assert t_ofi.tolist() == pytest.approx([0.0, 50.0, 150.0, 40.0])
    assert t_signed.tolist() == pytest.approx([0.0, 5.0, -10.0, 0.0])
    assert t_vwap[3] == pytest.approx(100.015)  # no trade in (15, 25]: the mid


def test_model_inputs_by_hand():
    """The per-event inputs of the default model: changes against the previous
    event, the microprice's lean and the queue sizes, on a two-event book."""
    series = {
        "time": torch.tensor([5, 2_000_000_005]),
        "bid_price": torch.tensor([[99.99], [100.00]], dtype=torch.float64),
        "bid_size": torch.tensor([[300.0], [0.0]], dtype=torch.float64),
        "ask_price": torch.tensor([[100.01], [100.03]], dtype=torch.float64),
        "ask_size": torch.tensor([[100.0], [0.0]], dtype=torch.float64),
        **{k: torch.zeros(2, dtype=torch.float64) for k in ("trade_price", "trade_size")},
        "trade_side": torch.zeros(2, dtype=torch.int8),
    }
    out = ma_kernels.book_features(
        **series, instant=("mid_change", "microprice_offset", "log_depth", "inter_arrival"),
        rolling=())
    mid_change, offset, log_depth, gap = out.T
    assert mid_change.tolist() == pytest.approx([0.0, 0.015])
    # Row 0: microprice (99.99 * 100 + 100.01 * 300) / 400 = 100.005, mid 100.00;
    # row 1 has no depth: the microprice is the mid.
    assert offset.tolist() == pytest.approx([0.005, 0.0])
    assert log_depth.tolist() == pytest.approx([math.log(401.0), 0.0])
    assert gap.tolist() == pytest.approx([0.0, 2.0])


@pytest.mark.parametrize("device", DEVICES)
def test_log_return_of_every_step_size(device):
    """Each branch of the log return: a tick (three terms of the series), a
    10 % move (the whole series), a tripling and a halving (log1p), an
    unmoved mid and a non-positive one (0), in float64 to a few ulps (the
    CUDA quotient is within an ulp of the CPU's division), and the rolling
    variance summing their squares."""
    mids = [100.0, 100.005, 110.0, 330.0, 165.0, 165.0, -1.0, 2.0]
    n = len(mids)
    series = {
        "time": torch.arange(n, device=device),
        "bid_price": torch.tensor(mids, dtype=torch.float64, device=device)[:, None] - 0.001,
        "ask_price": torch.tensor(mids, dtype=torch.float64, device=device)[:, None] + 0.001,
        **{k: torch.ones(n, 1, dtype=torch.float64, device=device)
           for k in ("bid_size", "ask_size")},
        **{k: torch.zeros(n, dtype=torch.float64, device=device)
           for k in ("trade_price", "trade_size")},
        "trade_side": torch.zeros(n, dtype=torch.int8, device=device),
    }
    out = ma_kernels.book_features(**series, instant=("log_return",),
                                   rolling=("realized_variance",), windows=(3,)).cpu()
    mid = (0.5 * (series["bid_price"] + series["ask_price"]))[:, 0].tolist()
    expected = [0.0] + [math.log1p((b - a) / a) if a > 0 and b > 0 else 0.0  # (b / a: 1e-12 off)
                        for a, b in itertools.pairwise(mid)]
    assert out[:, 0].tolist() == pytest.approx(expected, rel=4e-15, abs=1e-300)  # ~18 ulp
    squares = torch.tensor(expected, dtype=torch.float64) ** 2
    windowed = [squares[max(0, t - 2): t + 1].sum().item() for t in range(n)]
    assert out[:, 1].tolist() == pytest.approx(windowed, rel=1e-14)


def test_empty_series_and_empty_spec():
    series = random_series(0, 2)
    columns = len(ma_kernels.BOOK_INSTANT_FEATURES) + len(ma_kernels.BOOK_ROLLING_FEATURES)
    assert ma_kernels.book_features(**series).shape == (0, columns)
    series = random_series(5, 2)
    none = ma_kernels.book_features(**series, instant=(), rolling=())
    assert none.shape == (5, 0)


def bad(**changes):
    series = random_series(5, 2, seed=0)
    return {**series, **changes}


@pytest.mark.parametrize(
    "args, spec, message",
    [
        (bad(bid_price=torch.zeros(5)), {}, r"bid_price must be \[N, K\]"),
        (bad(bid_price=torch.zeros(5, 0, dtype=torch.float64)), {}, r"K >= 1 levels"),
        (bad(ask_size=torch.zeros(5, 3, dtype=torch.float64)), {}, r"ask_size must have shape"),
        (bad(trade_size=torch.zeros(4, dtype=torch.float64)), {}, "trade_size must have shape"),
        (bad(time=torch.zeros(5)), {}, "time must have dtype torch.int64"),
        (bad(trade_side=torch.zeros(5)), {}, "trade_side must have dtype torch.int8"),
        (bad(bid_size=torch.zeros(5, 2)), {}, "bid_size must have dtype torch.float64"),
        (bad(bid_price=torch.zeros(5, 2, dtype=torch.int32)), {}, "float32 or float64"),
        (bad(trade_price=[0.0] * 5), {}, "trade_price must be a torch.Tensor"),
        (bad(), {"instant": ("mid", "bogus")}, "instant"),
        (bad(), {"instant": "mid"}, "sequence of names"),
        (bad(), {"rolling": ("vwap", "vwap")}, "not distinct"),
        (bad(), {"depth_imbalance": (3,)}, "read 3 book levels; the book has 2"),
        (bad(), {"ofi_levels": 3}, "read 3 book levels"),
        (bad(), {"ofi_levels": -1}, "ofi_levels must be an int >= 0"),
        (bad(), {"windows": (0,)}, "windows must be a sequence of ints >= 1"),
        (bad(), {"time_windows": (True,)}, "time_windows must be a sequence of ints >= 1"),
        (bad(), {"windows": tuple(range(1, 10))}, "at most 8 entries"),
        (bad(), {"dtype": torch.float16}, "dtype must be torch.float32 or torch.float64"),
    ],
)
def test_bad_input_names_the_problem(args, spec, message):
    with pytest.raises(ValueError, match=message):
        ma_kernels.book_features(**args, **spec)


@pytest.mark.gpu
def test_mixed_devices_are_refused():
    with pytest.raises(ValueError, match="one device for all"):
        ma_kernels.book_features(**bad(trade_size=torch.zeros(5, dtype=torch.float64,
                                                              device="cuda")))


def op_args(series, dtype=torch.float64):
    return (*series.values(), [0, 2, 5], [2], 2, [0, 2, 3], [1, 9], [4], dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    torch.library.opcheck(torch.ops.ma_kernels.book_features.default,
                          op_args(random_series(300, 3, device=device)))


def test_direct_op_call_with_bad_codes_is_refused():
    args = list(op_args(random_series(30, 3)))
    args[8] = [0, 99]
    with pytest.raises(ValueError, match="feature codes out of range"):
        torch.ops.ma_kernels.book_features(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    series = random_series(1000, 3, device=device)
    spec = FULL | {"depth_imbalance": (1, 3), "ofi_levels": 3}
    compiled = torch.compile(lambda s: ma_kernels.book_features(**s, **spec) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(series), ma_kernels.book_features(**series, **spec) * 2)


@pytest.mark.gpu
def test_cuda_graph_capture_and_side_stream():
    series = random_series(20_000, 4, device="cuda", seed=8)
    prices = series["bid_price"]

    def op(bid_price):
        return ma_kernels.book_features(**{**series, "bid_price": bid_price}, **FULL)

    check_graph_capture_and_side_stream(op, lambda: prices + 0.01 * torch.randn_like(prices))


@pytest.mark.gpu
def test_cuda_refuses_strides_past_32_bits():
    """The CUDA kernels index by 32-bit products: a column strided 2^31 bytes
    apart (2 GB of int8) is refused by name, not read out of place."""
    series = random_series(2, 1, device="cuda")
    series["trade_side"] = torch.zeros(2**31 + 1, dtype=torch.int8, device="cuda")[::2**31]
    with pytest.raises(ValueError, match="2\\^31"):
        ma_kernels.book_features(**series, instant=("spread",))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_and_gpu_agree(dtype):
    series = random_series(300_000, 4, dtype=dtype, seed=9)
    spec = {"depth_imbalance": (2,), "ofi_levels": 4, "windows": (1, 100, 3000),
            "time_windows": (50, 4000)}
    on_gpu = ma_kernels.book_features(**{k: v.cuda() for k, v in series.items()}, **spec)
    torch.testing.assert_close(on_gpu.cpu(), ma_kernels.book_features(**series, **spec),
                               rtol=1e-5 if dtype == torch.float32 else 1e-10, atol=1e-9)

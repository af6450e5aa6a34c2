import pytest
import torch
from books import random_table
from conftest import DEVICES, check_graph_capture_and_side_stream, relative_error

import ma_kernels
from ma_kernels import microstructure, reference

# Per-column relative norm error against the float64 reference. float64: the
# reference's own prefix sums over the whole series differ from the kernels'
# window sums in the last bits; float32: one rounding of each output.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-10}
NAMES = ma_kernels.MICROSTRUCTURE_FEATURES


@pytest.fixture
def poisoned(monkeypatch):
    """Outputs start as NaN, so a row the kernel fails to write cannot pass."""
    monkeypatch.setattr(
        microstructure,
        "_empty_features",
        lambda table: torch.full(
            (table.shape[0], len(NAMES)), float("nan"), dtype=table.dtype, device=table.device
        ),
    )


def assert_matches_reference(table, window):
    out = ma_kernels.microstructure_features(table, window)
    assert out.shape == (len(table), len(NAMES))
    assert out.dtype == table.dtype and out.device == table.device
    assert not out.isnan().any()
    err = relative_error(out, reference.microstructure_features(table, window))
    assert (err <= TOLERANCE[table.dtype]).all(), dict(zip(NAMES, err.tolist(), strict=True))


# The CUDA kernel scans chunks of 1024 rows: windows below, at and above half
# a chunk (one chunk per tile, or tiles of 512 rows with a gap between the
# window's ends), and windows over one and several chunks.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "n, window",
    [(1, 1), (2, 100), (511, 1), (513, 100), (4097, 7), (4097, 512), (4097, 513),
     (3001, 1024), (5000, 1500), (9001, 2600), (200_003, 100)],
)
def test_matches_float64_reference(poisoned, device, dtype, n, window):
    assert_matches_reference(random_table(n, dtype=dtype, device=device), window)


@pytest.mark.parametrize("device", DEVICES)
def test_simulated_book(poisoned, device):
    sim = ma_kernels.simulate_lob(
        100_000, 1, 3, tick_size=0.01, initial_bid=100.0, limit_rate=5.0,
        spread_limit_rate=10.0, market_rate=5.0, market_imbalance_bias=0.5,
        spread_imbalance_bias=0.5, cancel_rate=0.5, partial_cancel_prob=0.2,
        max_order_size=200,
    )
    columns = [sim.bid_price[:, 0], sim.bid_size[:, 0], sim.ask_price[:, 0], sim.ask_size[:, 0],
               sim.trade_price, sim.trade_size]
    table = torch.stack(columns, 1).to(device=device, dtype=torch.float32)
    assert (table[:, 5] > 0).sum() > 1000
    assert_matches_reference(table, 100)


def test_no_drift_over_millions_of_rows():
    """Window sums stay as accurate at row 3M as at row 1000 (no running float32 sums)."""
    table = random_table(3_000_000, seed=5)
    out = ma_kernels.microstructure_features(table, 100)[-1000:]
    ref = reference.microstructure_features(table, 100)[-1000:]
    assert (relative_error(out, ref) <= 1e-6).all()


@pytest.mark.parametrize("device", DEVICES)
def test_window_longer_than_the_series(device):
    table = random_table(1000, dtype=torch.float64, device=device, seed=3)
    torch.testing.assert_close(
        ma_kernels.microstructure_features(table, 10**15),
        ma_kernels.microstructure_features(table, 1000),
        rtol=0,
        atol=0,
    )
    assert_matches_reference(table, 5000)


def test_thread_chunks_do_not_matter(monkeypatch):
    table = random_table(300_000, dtype=torch.float64, seed=2)
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "1")
    one = ma_kernels.microstructure_features(table, 300)
    monkeypatch.setenv("MA_KERNELS_NUM_THREADS", "7")
    torch.testing.assert_close(ma_kernels.microstructure_features(table, 300), one,
                               rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_views(poisoned, device):
    table = random_table(3000, dtype=torch.float64, device=device, seed=1)
    wide = torch.cat([table, torch.randn(3000, 2, dtype=torch.float64, device=device)], 1)
    views = {
        "column slice": wide[:, :6],
        "column-major": table.T.contiguous().T,
        "every other row": table[::2],
    }
    for name, view in views.items():
        out = ma_kernels.microstructure_features(view, 50).cpu()
        ref = reference.microstructure_features(view, 50)
        assert (relative_error(out, ref) <= 1e-10).all(), name


def test_hand_computed_rows():
    table = torch.tensor(
        [
            [99.99, 300.0, 100.01, 100.0, 0.0, 0.0],
            [100.00, 50.0, 100.02, 10.0, 100.02, 5.0],
            [100.00, 50.0, 100.02, 10.0, 100.00, 15.0],
            [100.01, 40.0, 100.03, 10.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    out = ma_kernels.microstructure_features(table, window=2)
    rolling_ofi, vwap, variance = out[:, 5:].unbind(1)
    # Row 0: no previous quote, no trade: OFI 0, VWAP = mid, no return.
    assert out[0, 5:].tolist() == pytest.approx([0.0, 100.0, 0.0])
    assert rolling_ofi[1] == pytest.approx(150.0)  # rows 0-1: 0 + 150
    assert rolling_ofi[2] == pytest.approx(150.0)  # rows 1-2: 150 + 0 (quote unchanged)
    assert rolling_ofi[3] == pytest.approx(0.0 + 40 + 10)  # bid up (+40), ask up (+10 lifted)
    assert vwap[1] == pytest.approx(100.02)
    assert vwap[2] == pytest.approx((100.02 * 5 + 100.00 * 15) / 20)
    assert vwap[3] == pytest.approx(100.00)  # only row 2's trade is in rows 2-3
    r1 = torch.log(torch.tensor(100.01 / 100.0, dtype=torch.float64)).item()
    r3 = torch.log(torch.tensor(100.02 / 100.01, dtype=torch.float64)).item()
    assert variance.tolist() == pytest.approx([0.0, r1**2, r1**2, r3**2], rel=1e-9)


def test_non_positive_mid_has_zero_return():
    table = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.2, 1.0, 0.0, 0.0]])
    assert ma_kernels.microstructure_features(table, 10)[:, 7].tolist() == [0.0, 0.0]


def test_empty_input():
    assert ma_kernels.microstructure_features(torch.empty(0, 6), 5).shape == (0, 8)


@pytest.mark.parametrize(
    "bad, window, message",
    [
        (torch.zeros(5, 4), 10, "size 6 in dimension 1"),
        (torch.zeros(5), 10, "2 dimensions"),
        (torch.zeros(5, 6, dtype=torch.int32), 10, "dtype float32, float64"),
        (torch.zeros(5, 6), 0, "window must be an int >= 1"),
        (torch.zeros(5, 6), 2.5, "window must be an int >= 1"),
        (torch.zeros(5, 6), True, "window must be an int >= 1"),
        (torch.zeros(5, 6), 2**63, "window must be an int >= 1"),
    ],
)
def test_bad_input_names_the_problem(bad, window, message):
    with pytest.raises(ValueError, match=message):
        ma_kernels.microstructure_features(bad, window)


def test_opcheck():
    table = random_table(700, dtype=torch.float64)
    torch.library.opcheck(torch.ops.ma_kernels.microstructure_features.default, (table, 30))


@pytest.mark.gpu
def test_opcheck_cuda():
    table = random_table(700, device="cuda")
    torch.library.opcheck(torch.ops.ma_kernels.microstructure_features.default, (table, 30))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    table = random_table(1000, device=device)
    compiled = torch.compile(
        lambda t: ma_kernels.microstructure_features(t, 100) * 2, fullgraph=True
    )
    torch.testing.assert_close(compiled(table), ma_kernels.microstructure_features(table) * 2)


@pytest.mark.gpu
def test_cuda_graph_capture_and_side_stream():
    check_graph_capture_and_side_stream(
        lambda t: ma_kernels.microstructure_features(t, 100),
        lambda: random_table(20_000, device="cuda"),
    )


@pytest.mark.gpu
@pytest.mark.parametrize("window", [1, 100, 512, 2000])
def test_cpu_and_gpu_agree(window):
    table = random_table(300_000, dtype=torch.float64)
    torch.testing.assert_close(
        ma_kernels.microstructure_features(table.cuda(), window).cpu(),
        ma_kernels.microstructure_features(table, window),
        rtol=1e-10,
        atol=1e-9,
    )

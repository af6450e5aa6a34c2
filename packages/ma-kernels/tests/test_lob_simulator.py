import math
import threading

import pytest
import torch

import ma_kernels
from ma_kernels import simulator

PARAMS = dict(
    tick_size=0.01,
    initial_bid=100.0,
    limit_rate=5.0,
    spread_limit_rate=10.0,
    market_rate=5.0,
    market_imbalance_bias=0.5,
    spread_imbalance_bias=0.5,
    cancel_rate=0.5,
    partial_cancel_prob=0.2,
    max_order_size=200,
)
SUBMIT, CANCEL, DELETE, EXECUTE = 1, 2, 3, 4


@pytest.fixture(autouse=True)
def poisoned(monkeypatch):
    """Outputs start as NaN / -99, so a cell the loop fails to write shows up."""

    def allocate(n_events, levels):
        out = allocate_empty(n_events, levels)
        for t in out:
            t.fill_(float("nan") if t.is_floating_point() else -99)
        return out

    allocate_empty = simulator._allocate
    monkeypatch.setattr(simulator, "_allocate", allocate)


def simulate(n=20_000, levels=10, seed=0, **overrides):
    return ma_kernels.simulate_lob(n, levels, seed, **{**PARAMS, **overrides})


def assert_same(a, b):
    for name, x, y in zip(a._fields, a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=name)


def test_same_seed_same_output_and_longer_runs_extend_shorter():
    assert_same(simulate(seed=7), simulate(seed=7))
    long = simulate(n=50_000, seed=7)
    assert_same(simulate(seed=7), simulator.LobSimulation(*(t[:20_000] for t in long)))
    assert not torch.equal(simulate(seed=8).time, simulate(seed=7).time)


def test_output_is_pinned():
    """The generator and samplers are ours, so these numbers hold on every
    machine; a change here is a change of model or generator (say so in the docs)."""
    out = simulate(n=10_000, levels=5, seed=123)
    bid_ticks = (torch.nan_to_num(out.bid_price) / PARAMS["tick_size"]).round().long()
    assert int(out.time[-1]) == 96_100_399_794
    assert int(out.event.long().sum()) == 20_336
    assert int(bid_ticks.sum()) == 500_001_720
    assert int(out.ask_size.long().sum()) == 43_478_266
    assert int(out.trade_size.long().sum()) == 87_008


def test_shapes_and_dtypes():
    out = simulate(n=100, levels=3)
    assert out.time.dtype == torch.int64 and out.event.dtype == torch.int8
    assert out.trade_side.dtype == torch.int8
    for t in (out.bid_price, out.bid_size, out.ask_price, out.ask_size):
        assert t.shape == (100, 3) and t.dtype == torch.float64
    for t in (out.trade_price, out.trade_size):
        assert t.shape == (100,) and t.dtype == torch.float64


def test_zero_events():
    out = simulate(n=0, levels=4)
    assert out.time.shape == (0,) and out.bid_price.shape == (0, 4)


@pytest.mark.parametrize("levels", [1, 2, 10])
def test_book_invariants(levels):
    tick = PARAMS["tick_size"]
    out = simulate(n=100_000, levels=levels, seed=levels)
    assert (out.time.diff() > 0).all() and out.time[0] > 0
    for side, outward in (("bid", -1), ("ask", 1)):
        price, size = getattr(out, f"{side}_price"), getattr(out, f"{side}_size")
        assert (size >= 0).all() and (size[:, 0] > 0).all(), side
        assert torch.equal(price.isnan(), size == 0), f"{side}: NaN price exactly where empty"
        empty = size == 0
        assert not (empty[:, :-1] & ~empty[:, 1:]).any(), f"{side}: empty levels come last"
        ticks = price[~empty] / tick
        assert (ticks - ticks.round()).abs().max() < 1e-6, f"{side}: price off the tick grid"
        assert (size == size.round()).all(), f"{side}: fractional size"
        steps = (price.diff(dim=1) * outward)[~empty[:, 1:]]
        assert (steps > tick / 2).all(), f"{side}: levels not strictly ordered"
    assert (out.bid_price[:, 0] < out.ask_price[:, 0]).all(), "crossed or locked book"


def test_every_event_type_occurs_and_trades_hit_the_previous_best():
    out = simulate(n=100_000)
    assert set(out.event.unique().tolist()) == {SUBMIT, CANCEL, DELETE, EXECUTE}
    trade = out.event == EXECUTE
    assert torch.equal(out.trade_side != 0, trade)
    assert (out.trade_size[trade] > 0).all() and (out.trade_size[~trade] == 0).all()
    assert (out.trade_price[~trade] == 0).all()
    assert set(out.trade_side[trade].unique().tolist()) == {-1, 1}
    rows = trade.nonzero().squeeze(1)[1:]  # skip row 0: it has no previous book
    buy = out.trade_side[rows] == 1
    before = rows - 1
    hit_price = torch.where(buy, out.ask_price[before, 0], out.bid_price[before, 0])
    hit_size = torch.where(buy, out.ask_size[before, 0], out.bid_size[before, 0])
    assert torch.equal(out.trade_price[rows], hit_price)
    assert (out.trade_size[rows] <= hit_size).all(), "a market order takes at most the best queue"


def test_mid_moves_and_spread_reopens():
    out = simulate(n=100_000)
    mid = (out.bid_price[:, 0] + out.ask_price[:, 0]) / 2
    spread = ((out.ask_price[:, 0] - out.bid_price[:, 0]) / PARAMS["tick_size"]).round()
    assert (mid.diff() > 0).any() and (mid.diff() < 0).any()
    assert (spread == 1).any() and (spread > 1).any()


def test_gil_is_released():
    """Another Python thread keeps running while the loop does."""

    done = threading.Event()
    ticks = []

    def count():
        while not done.is_set():
            ticks.append(1)

    thread = threading.Thread(target=count)
    thread.start()
    before = len(ticks)
    simulate(n=2_000_000, levels=1)
    during = len(ticks) - before
    done.set()
    thread.join()
    assert during > 1_000


BAD = [
    ("n_events", -1, "n_events"),
    ("n_events", 1.5, "n_events must be an int"),
    ("levels", 0, "levels"),
    ("seed", -1, "seed"),
    ("seed", 2**64, "seed"),
    ("tick_size", 0.0, "tick_size must be > 0"),
    ("tick_size", math.nan, "tick_size must be finite"),
    ("initial_bid", -1.0, "initial_bid"),
    ("initial_bid", 1e300, "initial_bid / tick_size"),
    ("limit_rate", 0.0, "limit_rate"),
    ("spread_limit_rate", 0.0, "spread_limit_rate"),
    ("market_rate", -0.1, "market_rate must be >= 0"),
    ("market_rate", math.inf, "market_rate must be finite"),
    ("market_imbalance_bias", 1.5, "market_imbalance_bias must be in"),
    ("spread_imbalance_bias", -0.5, "spread_imbalance_bias"),
    ("cancel_rate", 0.0, "cancel_rate"),
    ("cancel_rate", 1e-15, "mean size of a fresh level"),
    ("partial_cancel_prob", 2.0, "partial_cancel_prob"),
    ("max_order_size", 0, "max_order_size"),
    ("max_order_size", 10.0, "max_order_size must be an int"),
    ("max_order_size", True, "max_order_size must be an int"),
    ("limit_rate", "1", "limit_rate must be a real number"),
]


@pytest.mark.parametrize("name, value, message", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_parameters_raise_value_error(name, value, message):
    args = {"n_events": 10, "levels": 3, "seed": 0, **PARAMS, name: value}
    with pytest.raises(ValueError, match=message):
        ma_kernels.simulate_lob(**args)

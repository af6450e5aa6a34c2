import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from engines import (
    DEVICES,
    HORIZONS,
    WINDOWS,
    engine_for,
    fitted_inputs,
    small_config,
    small_model,
    ticks_of,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import ma_features
import ma_kernels
import ma_model
from ma_runtime import REJECTIONS, RESIDENT_MAX_INSTRUMENTS, StreamEngine


def batch_signals(engine: StreamEngine, ticks: ma_features.Ticks) -> torch.Tensor:
    """What training-time code computes on one instrument's whole series at once."""
    raw = ma_model.raw_columns(ticks, engine.inputs.spec)
    x, dt = engine.inputs.normalize(raw["x"], raw["dt"])
    with torch.no_grad():
        logits, _ = engine.model(x[None].to(engine.device), dt[None].to(engine.device))
    return logits[0].softmax(-1).cpu()


def interleave(streams, seed: int):
    """All ticks of ``streams`` in one random arrival order (each stream's own
    order kept), as (Ticks, instrument ids)."""
    order = np.concatenate([np.full(len(s), i) for i, s in enumerate(streams)])
    np.random.default_rng(seed).shuffle(order)
    taken = [0] * len(streams)
    rows = []
    for i in order:
        rows.append((i, taken[i]))
        taken[i] += 1
    merged = ma_features.Ticks.concat([streams[i][j : j + 1] for i, j in rows])
    return merged, order


def check_stream_equals_batch(engine, streams, seed, chunk, rtol=1e-4, atol=1e-5):
    merged, ids = interleave(streams, seed)
    got = [[] for _ in streams]
    for start in range(0, len(merged), chunk):
        signals = engine.push(merged[start : start + chunk], ids[start : start + chunk])
        assert len(signals.rejected_index) == 0
        for i, probabilities in zip(signals.instrument, signals.probabilities, strict=True):
            got[i].append(probabilities)
    for i, ticks in enumerate(streams):
        torch.testing.assert_close(torch.stack(got[i]), batch_signals(engine, ticks),
                                   rtol=rtol, atol=atol)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), instruments=st.integers(1, 3),
       chunk=st.sampled_from([1, 7, 1000]), windows=st.booleans())
def test_stream_equals_batch_interleaved_past_the_ring_wrap(seed, instruments, chunk, windows):
    """Ticks of several instruments in random order, pushed one at a time or
    in bursts: each signal equals the batch path over that instrument's own
    ticks, past the KV rings' wrap-around (4 and 8 slots, 40 ticks)."""
    engine = engine_for(WINDOWS if windows else None, instruments)
    streams = [ticks_of(40, seed + i) for i in range(instruments)]
    check_stream_equals_batch(engine, streams, seed, chunk)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), instruments=st.integers(1, 3),
       chunk=st.sampled_from([1, 7, 1000]))
def test_rolling_normalization_streams_as_the_batch(seed, instruments, chunk):
    """Inputs standardised against each instrument's last 6 ticks: the same
    signals as the batch path, past the rolling window's wrap-around."""
    engine = engine_for(WINDOWS, instruments, rolling=6)
    streams = [ticks_of(40, seed + i) for i in range(instruments)]
    check_stream_equals_batch(engine, streams, seed, chunk)


@pytest.mark.parametrize("mode", ["eager", pytest.param("graph", marks=pytest.mark.gpu),
                                  pytest.param("resident", marks=pytest.mark.gpu)])
def test_every_instrument_once_in_order_streams_as_the_batch(mode):
    """The usual many-instrument push, a tick of each instrument in id order
    (its own path, staged column by column), gives the batch path's signals; a bad tick in
    it is refused alone, and the instrument's next tick goes on from there."""
    engine = engine_for(instruments=3) if mode == "eager" else resident_engine(3, mode)
    rtol, atol = (0, ma_kernels.resident.PROBABILITY_TOLERANCE) if mode == "resident" else (
        1e-4, 1e-5)
    streams = [ticks_of(40, 7 + i) for i in range(3)]
    got = [[] for _ in streams]
    for t in range(40):
        row = [s[t : t + 1] for s in streams]
        if t == 20:  # instrument 1's tick comes crossed first, then as it was
            row[1] = BAD_TICKS["bad_size"](row[1])
        pushes = [engine.push(ma_features.Ticks.concat(row), np.arange(3))]
        if t == 20:
            assert pushes[0].rejected_reason.tolist() == ["bad_size"]
            pushes.append(engine.push(streams[1][t : t + 1], [1]))
        for signals in pushes:
            for i, probabilities in zip(signals.instrument, signals.probabilities, strict=True):
                got[i].append(probabilities)
    for i, ticks in enumerate(streams):
        torch.testing.assert_close(torch.stack(got[i]), batch_signals(engine, ticks),
                                   rtol=rtol, atol=atol)


def test_signals_carry_time_sequence_and_order():
    engine = engine_for(instruments=2)
    a, b = ticks_of(3, 1), ticks_of(2, 2)
    merged = ma_features.Ticks.concat([a[:1], b[:1], a[1:3], b[1:2]])
    signals = engine.push(merged, [0, 1, 0, 0, 1])
    assert signals.index.tolist() == [0, 1, 2, 3, 4]
    assert signals.instrument.tolist() == [0, 1, 0, 0, 1]
    assert signals.sequence.tolist() == [1, 1, 2, 3, 2]
    assert signals.time.tolist() == merged.time.tolist()
    assert signals.probabilities.shape == (5, len(HORIZONS), 3)
    assert signals.regression.shape == (5, len(HORIZONS))
    torch.testing.assert_close(signals.probabilities.sum(-1), torch.ones(5, len(HORIZONS)))


def test_sequence_numbers_stay_exact_past_float32():
    engine = engine_for(instruments=1)
    engine.cache.pos.fill_(2**25)  # as if 33.5 million ticks had come
    assert engine.push(ticks_of(2, 1)).sequence.tolist() == [2**25 + 1, 2**25 + 2]


def broken(ticks: ma_features.Ticks, field: str, value, level: int | None = 0):
    """A copy of one tick with one value changed."""
    values = {k: v.copy() for k, v in vars(ticks).items()}
    if level is None:
        values[field][0] = value
    else:
        values[field][0, level] = value
    return ma_features.Ticks(**values)


BAD_TICKS = {
    "bad_event": lambda t: broken(t, "event", 9, None),
    "bad_price": lambda t: broken(t, "ask_price", np.nan),
    "empty_level_price": lambda t: broken(broken(t, "bid_size", 0.0), "bid_price", 99.0),
    "bad_trade": lambda t: broken(t, "trade_side", 2, None),
    "bad_size": lambda t: broken(t, "bid_size", -5.0),
    "crossed_book": lambda t: broken(t, "bid_price", t.ask_price[0, 0] + 0.5),
    "empty_side": lambda t: ma_features.Ticks(**{**vars(t), "bid_price": np.full_like(
        t.bid_price, np.nan), "bid_size": np.zeros_like(t.bid_size)}),  # no bid at all
    "time_backwards": lambda t: broken(t, "time", t.time[0] - 10, None),
    "overflow": lambda t: broken(broken(broken(t, "trade_size", 1e30, None), "trade_price",
                                        t.bid_price[0, 0], None), "trade_side", 1, None),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reason", sorted(BAD_TICKS))
def test_a_bad_tick_is_refused_counted_and_forgotten(reason, device):
    """The tick is refused with its reason, the instrument's state untouched:
    the following good ticks give the signals of an engine that never saw it."""
    spec = ma_features.FeatureSpec.model_inputs().including("signed_volume")
    ticks = ticks_of(30, 5)
    clean, dirty = engine_for(spec, 2, device=device), engine_for(spec, 2, device=device)
    expected = clean.push(ticks, np.zeros(30, dtype=np.int64))
    dirty.push(ticks[:10], np.zeros(10, dtype=np.int64))
    bad = BAD_TICKS[reason](ticks[10:11])
    signals = dirty.push(bad, [0])
    assert signals.rejected_reason.tolist() == [reason] and len(signals) == 0
    assert dirty.rejected == {reason: 1} and reason in REJECTIONS
    rest = dirty.push(ticks[10:], np.zeros(20, dtype=np.int64))
    torch.testing.assert_close(rest.probabilities, expected.probabilities[10:], rtol=0, atol=0)
    assert rest.sequence.tolist() == list(range(11, 31))


def test_unknown_instruments_and_other_levels_are_refused():
    engine = engine_for(instruments=2)
    ticks = ticks_of(4, 3)
    signals = engine.push(ticks, [0, 2, -1, 1])
    assert signals.rejected_reason.tolist() == ["unknown_instrument"] * 2
    assert signals.instrument.tolist() == [0, 1]
    deep = engine_for(ma_features.FeatureSpec.model_inputs(), levels=3)
    assert deep.push(ticks_of(2, 4, levels=2)).rejected_reason.tolist() == ["levels"] * 2
    assert len(deep.push(ticks_of(2, 4, levels=5))) == 2  # more levels than read: fine
    assert engine.rejected == {"unknown_instrument": 2} and deep.rejected == {"levels": 2}


def test_wrong_arguments_are_errors():
    engine = engine_for()
    with pytest.raises(ValueError, match="ticks must be ma_features.Ticks"):
        engine.push(np.zeros(3))
    with pytest.raises(ValueError, match="instruments must be 2 ints"):
        engine.push(ticks_of(2, 1), [0])
    with pytest.raises(ValueError, match="instruments must be an int >= 1"):
        engine_for(instruments=0)
    other = ma_model.ModelInputs.fit(ma_features.FeatureSpec(instant=("spread",), rolling=()),
                                     torch.rand(10, 1), torch.rand(10))
    with pytest.raises(ValueError, match="the model reads 6 columns; the inputs' spec has 1"):
        StreamEngine(small_model(small_config()), other)


@pytest.mark.parametrize("rolling", [None, 6])
def test_snapshot_restore_continues_as_if_never_stopped(tmp_path, rolling):
    ticks = ticks_of(60, 8)
    ids = np.random.default_rng(0).integers(0, 3, 60)
    whole = engine_for(WINDOWS, 3, rolling)
    expected = whole.push(ticks, ids)
    first = engine_for(WINDOWS, 3, rolling)
    first.push(ticks[:25], ids[:25])
    path = first.save(tmp_path / "engine.pt")
    second = engine_for(WINDOWS, 3, rolling)
    second.load(path)
    rest = second.push(ticks[25:], ids[25:])
    torch.testing.assert_close(rest.probabilities, expected.probabilities[25:], rtol=0, atol=0)
    assert second.accepted == 60
    second.reset()
    again = second.push(ticks, ids)
    torch.testing.assert_close(again.probabilities, expected.probabilities, rtol=0, atol=0)
    with pytest.raises(ValueError, match="instruments=3, this engine 2"):
        engine_for(WINDOWS, 2).load(path)
    with pytest.raises(ValueError, match="the snapshot's rolling normalisation keeps"):
        engine_for(WINDOWS, 3, 5 if rolling else 6).load(path)


RESUME = """
import sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from engines import WINDOWS, engine_for, ticks_of
ticks, ids = ticks_of(60, 8), np.random.default_rng(0).integers(0, 3, 60)
engine = engine_for(WINDOWS, 3)
engine.load({path!r})
torch.save(engine.push(ticks[25:], ids[25:]).probabilities, {out!r})
"""


def test_snapshot_restores_in_another_process(tmp_path):
    ticks, ids = ticks_of(60, 8), np.random.default_rng(0).integers(0, 3, 60)
    expected = engine_for(WINDOWS, 3).push(ticks, ids)
    first = engine_for(WINDOWS, 3)
    first.push(ticks[:25], ids[:25])
    path, out = first.save(tmp_path / "engine.pt"), tmp_path / "rest.pt"
    tests = str(__import__("pathlib").Path(__file__).parent)
    subprocess.run([sys.executable, "-c", RESUME.format(tests=tests, path=str(path),
                                                        out=str(out))], check=True)
    torch.testing.assert_close(torch.load(out), expected.probabilities[25:], rtol=0, atol=0)


@pytest.mark.parametrize("rolling", [None, 6])
def test_from_checkpoint(tmp_path, rolling):
    cfg = small_config(WINDOWS)
    model, inputs = small_model(cfg), fitted_inputs(WINDOWS, rolling)
    path = ma_model.save_checkpoint(tmp_path / "best.pt", model=model.state_dict(),
                                    config=cfg.to_dict(), normalization=inputs.state_dict())
    engine = StreamEngine.from_checkpoint(path, device="cpu")
    assert engine.inputs.rolling == rolling
    ticks = ticks_of(20, 9)
    torch.testing.assert_close(engine.push(ticks).probabilities, batch_signals(engine, ticks),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("instruments", [1, 8])
def test_cuda_graph_stream_equals_batch(instruments):
    cfg = small_config(WINDOWS, model_dim=64)  # head dim 32 on CUDA
    engine = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS), instruments=instruments,
                          device="cuda", mode="graph")
    assert engine.mode == "graph" and engine._graph is not None
    streams = [ticks_of(40, 20 + i) for i in range(instruments)]
    check_stream_equals_batch(engine, streams, seed=3, chunk=5)


@pytest.mark.gpu
@pytest.mark.parametrize("ticks", [1, 3])
def test_each_push_marks_its_stages_as_nvtx_ranges(monkeypatch, ticks):
    """Nsight Systems sees pack, step and signals of every push (docs/profiling.md)."""
    calls = []
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda name: calls.append(name))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: calls.append("pop"))
    resident_engine(1, mode="graph").push(ticks_of(ticks, 5))
    assert calls == ["ma.pack", "pop", *["ma.step", "pop"] * ticks, "ma.signals", "pop"]


def test_modes_name_themselves():
    for mode, device in (("resident", "cpu"), ("graph", "cpu"), ("fast", "cpu")):
        with pytest.raises(ValueError, match="mode must be one of"):
            engine_for(mode=mode, device=device)
    assert engine_for().mode == "eager"


def resident_engine(instruments: int, mode: str = "resident") -> StreamEngine:
    cfg = small_config(WINDOWS, model_dim=64)  # head dim 32
    engine = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS), instruments=instruments,
                          device="cuda", mode=mode)
    assert engine.mode == mode
    return engine


@pytest.mark.gpu
@pytest.mark.parametrize("instruments", [1, 8, 19])
def test_resident_stream_equals_batch(instruments):
    """The resident kernel, one tile or three, past the rings' wrap-around,
    within the stated tolerance of its bf16 weights."""
    engine = resident_engine(instruments)
    streams = [ticks_of(40, 30 + i) for i in range(instruments)]
    check_stream_equals_batch(engine, streams, seed=4, chunk=7, rtol=0,
                              atol=ma_kernels.resident.PROBABILITY_TOLERANCE)


@pytest.mark.gpu
def test_resident_refuses_what_the_graph_refuses():
    graph, resident = resident_engine(3, "graph"), resident_engine(3)
    rng = np.random.default_rng(5)
    for k in range(30):
        ticks = ticks_of(3, 100 + k)
        reason = sorted(BAD_TICKS)[k % len(BAD_TICKS)]
        if k % 3 == 0:
            ticks = ma_features.Ticks.concat([BAD_TICKS[reason](ticks[:1]), ticks[1:]])
        ids = rng.permutation(3)
        a, b = graph.push(ticks, ids), resident.push(ticks, ids)
        assert a.rejected_reason.tolist() == b.rejected_reason.tolist()
        assert a.index.tolist() == b.index.tolist() and a.sequence.tolist() == b.sequence.tolist()
        torch.testing.assert_close(b.probabilities, a.probabilities, rtol=0,
                                   atol=ma_kernels.resident.PROBABILITY_TOLERANCE)
    assert graph.rejected == resident.rejected


@pytest.mark.gpu
def test_resident_snapshot_restore_and_idle_relaunch(tmp_path):
    import time

    ticks, ids = ticks_of(60, 8), np.random.default_rng(0).integers(0, 3, 60)
    expected = resident_engine(3).push(ticks, ids)
    engine = resident_engine(3)
    engine.push(ticks[:25], ids[:25])
    path = engine.save(tmp_path / "engine.pt")
    engine.push(ticks[25:40], ids[25:40])
    engine.load(path)  # back to tick 25: the kernel restarts on the restored state
    time.sleep(1.5)  # past the kernel's idle timeout: it leaves, the next round relaunches it
    rest = engine.push(ticks[25:], ids[25:])
    torch.testing.assert_close(rest.probabilities, expected.probabilities[25:], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_close_stops_and_a_later_push_goes_on(device):
    """``with`` closes the engine (stops a resident kernel), on an error too;
    a push after it continues the stream where it was."""
    ticks = ticks_of(20, 9)
    expected = engine_for(instruments=1, device=device).push(ticks)
    with pytest.raises(KeyError), engine_for(instruments=1, device=device) as engine:
        first = engine.push(ticks[:10])
        raise KeyError("an error inside the block")
    rest = engine.push(ticks[10:])
    torch.testing.assert_close(torch.cat([first.probabilities, rest.probabilities]),
                               expected.probabilities, rtol=0, atol=0)


@pytest.mark.gpu
def test_resident_close_relaunches_on_the_next_push():
    ticks = ticks_of(30, 10)
    expected = resident_engine(1).push(ticks)
    with resident_engine(1) as engine:
        first = engine.push(ticks[:15])
    assert engine.mode == "resident"
    rest = engine.push(ticks[15:])
    torch.testing.assert_close(torch.cat([first.probabilities, rest.probabilities]),
                               expected.probabilities, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_resident_refuses_a_rolling_normalization_and_takes_the_graph():
    cfg = small_config(WINDOWS, model_dim=64)  # inside the kernel's family
    with pytest.warns(UserWarning, match="the kernel has no rolling normalisation"):
        engine = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS, rolling=6), device="cuda",
                              mode="resident")
    assert engine.mode == "graph" and engine._graph is not None
    check_stream_equals_batch(engine, [ticks_of(40, 30)], seed=4, chunk=5)


@pytest.mark.gpu
def test_resident_falls_back_to_the_graph_with_a_reason():
    cfg = small_config(WINDOWS, model_dim=256)  # head dim 128: outside the kernel's family
    with pytest.warns(UserWarning, match="resident mode unavailable"):
        engine = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS), device="cuda",
                              mode="resident")
    assert engine.mode == "graph" and engine._graph is not None


@pytest.mark.gpu
def test_the_default_on_cuda_is_the_resident_kernel_where_the_model_fits(caplog, recwarn):
    fits = StreamEngine(small_model(small_config(WINDOWS, model_dim=64)), fitted_inputs(WINDOWS),
                        device="cuda")
    assert fits.mode == "resident" and fits._resident is not None
    with caplog.at_level(logging.INFO, logger="ma_runtime"):
        outside = StreamEngine(small_model(small_config(WINDOWS, model_dim=256)),
                               fitted_inputs(WINDOWS), device="cuda")
    assert outside.mode == "graph" and outside._graph is not None
    assert "resident mode unavailable" in caplog.text  # logged, not warned: it was not asked for
    assert not [w for w in recwarn if "resident mode" in str(w.message)]


@pytest.mark.gpu
def test_the_default_on_cuda_is_the_graph_past_the_resident_kernels_instruments(caplog):
    """Where the graph is the faster (many instruments), it is the default, logged."""
    cfg = small_config(WINDOWS, model_dim=64)
    with caplog.at_level(logging.INFO, logger="ma_runtime"):
        many = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS),
                            instruments=RESIDENT_MAX_INSTRUMENTS + 1, device="cuda")
    assert many.mode == "graph" and many._graph is not None
    assert f"resident kernel is the faster up to {RESIDENT_MAX_INSTRUMENTS}" in caplog.text
    asked = StreamEngine(small_model(cfg), fitted_inputs(WINDOWS),
                         instruments=RESIDENT_MAX_INSTRUMENTS + 1, device="cuda", mode="resident")
    assert asked.mode == "resident"

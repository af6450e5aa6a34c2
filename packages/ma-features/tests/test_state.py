import re

import numpy as np
import pytest
import torch
from features_reference import assert_columns_close
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compute import valid_ticks

from ma_features import (
    INSTANT_FEATURES,
    ROLLING_FEATURES,
    FeatureSpec,
    FeatureState,
    Ticks,
    compute_features,
    simulate,
)

SPEC = FeatureSpec(depth_imbalance=(1, 3), ofi_levels=3, windows=(1, 4, 9))
# Time windows in ns over tick_times() below (gaps 0-3 ns): a few events each.
TIMED = FeatureSpec(ofi_levels=2, windows=(3,), time_windows=(1, 5, 17))
FIELDS = ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
          "trade_size", "trade_side")


def batch_features(ticks: Ticks, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    out, names = compute_features(ticks, spec, dtype=torch.float64)
    return dict(zip(names, out.unbind(1), strict=True))


def with_tick_times(ticks: Ticks, seed: int) -> Ticks:
    """``ticks`` at small, non-decreasing times with ties (gaps of 0 to 3 ns)."""
    gaps = np.random.default_rng(seed).integers(0, 4, len(ticks))
    return type(ticks)(**{**vars(ticks), "time": np.cumsum(gaps).astype(np.int64)})


def events_needed(ticks: Ticks, spec: FeatureSpec) -> int:
    """The most events any time window of ``spec`` holds over ``ticks``."""
    rows = np.arange(len(ticks))
    return max(
        (int((rows + 1 - np.searchsorted(ticks.time, ticks.time - tau, side="right")).max())
         for tau in spec.time_windows if len(ticks)),
        default=0,
    )


def stream(state: FeatureState, ticks: Ticks, cuts) -> torch.Tensor:
    bounds = sorted({0, len(ticks), *(c for c in cuts if c < len(ticks))})
    return torch.cat(
        [state.update_ticks(ticks[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        or [torch.empty(0, len(state.names), dtype=state.dtype)]
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    spec=st.sampled_from([SPEC, FeatureSpec(), FeatureSpec.anchors(), TIMED]),
)
def test_stream_in_any_chunks_equals_batch(seed, n, cuts, spec):
    ticks = with_tick_times(valid_ticks(seed, n), seed)
    # The least max_events that fits: streaming must neither overflow nor truncate.
    state = FeatureState(spec, dtype=torch.float64, max_events=max(1, events_needed(ticks, spec)))
    streamed = stream(state, ticks, cuts)
    assert streamed.shape == (len(ticks), len(spec.names))
    assert_columns_close(streamed, state.names, batch_features(ticks, spec), rel=1e-9)


@st.composite
def feature_specs(draw) -> FeatureSpec:
    """Any FeatureSpec over 4 levels: subsets in any order, empty lists included."""
    def subset(names):
        return tuple(draw(st.permutations(names))[: draw(st.integers(0, len(names)))])

    small = st.lists(st.integers(1, 12), max_size=3, unique=True).map(tuple)
    return FeatureSpec(
        instant=subset(INSTANT_FEATURES), rolling=subset(ROLLING_FEATURES),
        depth_imbalance=draw(st.lists(st.integers(1, 4), max_size=3, unique=True).map(tuple)),
        ofi_levels=draw(st.integers(0, 4)), windows=draw(small), time_windows=draw(small),
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), spec=feature_specs())
def test_any_spec_streams_as_it_batches(seed, n, spec):
    """The fused batch op and the torch stream agree column by column on any spec."""
    ticks = with_tick_times(valid_ticks(seed, n), seed)
    state = FeatureState(spec, dtype=torch.float64, max_events=max(1, events_needed(ticks, spec)))
    streamed = state.update_ticks(ticks)
    assert streamed.shape == (len(ticks), len(spec.names))
    assert_columns_close(streamed, state.names, batch_features(ticks, spec), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 60), cuts=st.lists(st.integers(0, 60)))
def test_time_window_over_max_events_raises(seed, n, cuts):
    ticks = with_tick_times(valid_ticks(seed, n), seed)
    needed = events_needed(ticks, TIMED)
    if needed < 2:
        return
    state = FeatureState(TIMED, dtype=torch.float64, max_events=needed - 1)
    with pytest.raises(ValueError, match=rf"time window \d+ns would hold more than "
                                         rf"max_events={needed - 1} events \(instruments \[0\]\)"):
        stream(state, ticks, cuts)


def stacked(streams: list[Ticks], t: int, device="cpu") -> dict[str, torch.Tensor]:
    """Event ``t`` of every stream, as one batched update."""
    return {f: torch.from_numpy(np.stack([getattr(s, f)[t] for s in streams])).to(device)
            for f in FIELDS}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 5), n=st.integers(1, 40),
       spec=st.one_of(st.sampled_from([SPEC, TIMED, FeatureSpec.model_inputs()]),
                      feature_specs()))
def test_many_instruments_at_once_equal_each_alone(seed, batch, n, spec):
    """Simulated days of several instruments stepped together, each against
    the batch op over its own ticks, on any spec."""
    # Each instrument has its own clock, so its time windows hold their own counts.
    streams = [with_tick_times(simulate(n, levels=4, seed=seed + i), seed + i)
               for i in range(batch)]
    needed = max(events_needed(s, spec) for s in streams)
    state = FeatureState(spec, batch=batch, dtype=torch.float64, max_events=max(1, needed))
    out = torch.stack([state.update(stacked(streams, t)) for t in range(n)], dim=1)  # [B, n, F]
    for i, ticks in enumerate(streams):
        assert_columns_close(out[i], spec.names, batch_features(ticks, spec), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 4), n=st.integers(1, 30),
       spec=st.one_of(st.sampled_from([SPEC, TIMED, FeatureSpec.model_inputs()]),
                      feature_specs()))
def test_instruments_tick_in_any_order(seed, batch, n, spec):
    """Each update carries a tick for a random subset of the instruments (the
    others' rows hold stale values): every instrument's features equal the
    batch op over its own ticks, and an instrument that did not tick keeps
    its state."""
    streams = [with_tick_times(simulate(n, levels=4, seed=seed + i), seed + i)
               for i in range(batch)]
    needed = max(events_needed(s, spec) for s in streams)
    state = FeatureState(spec, batch=batch, dtype=torch.float64, max_events=max(1, needed))
    rng = np.random.default_rng(seed)
    sent = [0] * batch
    got = [[] for _ in range(batch)]
    while min(sent) < n:
        active = torch.from_numpy((rng.random(batch) < 0.5) & (np.array(sent) < n))
        rows = [min(i, n - 1) for i in sent]
        event = {f: torch.from_numpy(np.stack([getattr(s, f)[r] for s, r in zip(
            streams, rows, strict=True)])) for f in FIELDS}
        out = state.update(event, active)
        for i in active.nonzero()[:, 0].tolist():
            got[i].append(out[i])
            sent[i] += 1
    for i, ticks in enumerate(streams):
        assert_columns_close(torch.stack(got[i]), spec.names, batch_features(ticks, spec),
                             rel=1e-9)


def test_a_refused_event_leaves_the_state_as_if_it_never_came():
    ticks = with_tick_times(simulate(80, levels=3, seed=5), 5)
    spec = TIMED
    clean = FeatureState(spec, dtype=torch.float64, max_events=64)
    expected = clean.update_ticks(ticks[1:])
    state = FeatureState(spec, dtype=torch.float64, max_events=64)
    event = {f: torch.from_numpy(getattr(ticks, f)[:1]) for f in FIELDS}
    refused = state.update(event, accept=lambda values: torch.zeros(1, dtype=torch.bool))
    assert refused.shape == (1, len(spec.names))
    assert state.state_dict()["count"].tolist() == [0]
    torch.testing.assert_close(state.update_ticks(ticks[1:]), expected, rtol=0, atol=0)


def test_state_dict_round_trip_continues_the_stream():
    ticks = with_tick_times(simulate(120, levels=3, seed=6), 6)
    state = FeatureState(TIMED, dtype=torch.float64, max_events=64)
    state.update_ticks(ticks[:70])
    saved = state.state_dict()
    rest = state.update_ticks(ticks[70:])
    other = FeatureState(TIMED, dtype=torch.float64, max_events=64)
    other.load_state_dict(saved)
    torch.testing.assert_close(other.update_ticks(ticks[70:]), rest, rtol=0, atol=0)
    with pytest.raises(ValueError, match="expected"):
        FeatureState(TIMED, max_events=32).load_state_dict(saved)


def test_float32_output_and_reset():
    ticks = simulate(300, levels=3, seed=1)
    state = FeatureState(SPEC)
    first = state.update_ticks(ticks)
    assert first.dtype == torch.float32
    state.reset()
    torch.testing.assert_close(state.update_ticks(ticks), first, rtol=0, atol=0)


def test_caller_may_refill_its_buffers():
    ticks = simulate(50, levels=3, seed=2)
    state = FeatureState(SPEC)
    buffers = {f: torch.from_numpy(getattr(ticks, f)[:1].copy()) for f in FIELDS}
    rows = []
    for t in range(len(ticks)):
        for f in FIELDS:
            buffers[f].copy_(torch.from_numpy(getattr(ticks, f)[t : t + 1]))
        rows.append(state.update(buffers))
    torch.testing.assert_close(torch.cat(rows), FeatureState(SPEC).update_ticks(ticks))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        FeatureState(batch=0)
    with pytest.raises(ValueError, match="max_events must be an int >= 1, got 0"):
        FeatureState(TIMED, max_events=0)
    state = FeatureState(SPEC, batch=2)
    ticks = simulate(2, levels=3, seed=0)
    event = {f: torch.from_numpy(getattr(ticks, f)) for f in FIELDS}
    with pytest.raises(ValueError, match=r"event lacks \['time'\]"):
        state.update({k: v for k, v in event.items() if k != "time"})
    with pytest.raises(ValueError, match=r"event\['trade_size'\] must be \[batch\] with batch 2"):
        state.update({**event, "trade_size": event["trade_size"][:1]})
    with pytest.raises(ValueError, match=r"event\['bid_size'\] has 2 levels; the spec reads 3"):
        state.update({**event, "bid_size": event["bid_size"][:, :2]})
    with pytest.raises(ValueError, match="this state has batch 2"):
        state.update_ticks(ticks)


@pytest.mark.gpu
def test_gpu_state_stays_on_the_gpu_and_equals_cpu():
    ticks = simulate(500, levels=3, seed=9)
    state = FeatureState(SPEC, device="cuda", dtype=torch.float64)
    out = state.update_ticks(ticks)
    assert out.device.type == "cuda" and state._ring.device.type == "cuda"
    cpu = FeatureState(SPEC, dtype=torch.float64).update_ticks(ticks)
    torch.testing.assert_close(out.cpu(), cpu, rtol=1e-12, atol=1e-12)


def test_cpu_overflow_raises_at_the_first_overflowing_tick():
    ticks = with_tick_times(simulate(40, levels=3, seed=3), 3)
    tau = TIMED.time_windows[-1]
    limit = events_needed(ticks, TIMED) - 1
    held = np.arange(40) + 1 - np.searchsorted(ticks.time, ticks.time - tau, side="right")
    first = int(np.argmax(held > limit))
    state = FeatureState(TIMED, dtype=torch.float64, max_events=limit)
    rows = [state.update(stacked([ticks], t)) for t in range(first)]
    assert_columns_close(torch.cat(rows), TIMED.names, batch_features(ticks[:first], TIMED),
                         rel=1e-9)
    for _ in range(2):  # the failing update changed nothing: it fails again the same way
        with pytest.raises(ValueError, match=f"time window {tau}ns would hold more than"):
            state.update(stacked([ticks], first))


@pytest.mark.gpu
@pytest.mark.parametrize("spec", [SPEC, TIMED], ids=["event", "time"])
def test_gpu_update_never_syncs_with_the_host(spec):
    ticks = with_tick_times(simulate(40, levels=3, seed=10), 10)
    events = [stacked([ticks], t, "cuda") for t in range(len(ticks))]
    state = FeatureState(spec, device="cuda", dtype=torch.float64)
    state.update(events[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        rows = [state.update(event) for event in events[1:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    state.check()
    expected = FeatureState(spec, dtype=torch.float64).update_ticks(ticks)[1:]
    torch.testing.assert_close(torch.cat(rows).cpu(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
def test_gpu_overflow_is_nan_where_it_happens_then_check_raises():
    streams = [with_tick_times(simulate(60, levels=3, seed=s), s) for s in (11, 12, 13)]
    tau = TIMED.time_windows[-1]
    needed = [events_needed(s, FeatureSpec(windows=(), time_windows=(tau,))) for s in streams]
    limit = sorted(needed)[1] - 1  # the two busiest instruments overflow the longest window
    state = FeatureState(TIMED, batch=3, device="cuda", dtype=torch.float64, max_events=limit)
    events = [stacked(streams, t, "cuda") for t in range(60)]  # copies from the host sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = torch.stack([state.update(event) for event in events], 1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    out = out.cpu()
    columns = [i for i, name in enumerate(TIMED.names) if name.endswith(f"_{tau}ns")]
    for i, ticks in enumerate(streams):
        held = np.arange(60) + 1 - np.searchsorted(ticks.time, ticks.time - tau, side="right")
        over = torch.from_numpy(held > limit)
        assert over.any() == (needed[i] > limit)
        assert out[i][over][:, columns].isnan().all()
        # Everything else equals the batch output.
        expected = torch.stack(list(batch_features(ticks, TIMED).values()), 1)
        torch.testing.assert_close(out[i][~over], expected[~over], rtol=1e-9, atol=1e-9)
        assert not out[i][:, [c for c in range(out.shape[2]) if c not in columns]].isnan().any()
    busy = [i for i in range(3) if needed[i] > limit]
    message = f"time window {tau}ns held more than max_events={limit} events (instruments {busy})"
    with pytest.raises(ValueError, match=re.escape(message)):
        state.check()
    state.reset()
    state.check()

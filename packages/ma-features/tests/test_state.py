import numpy as np
import pytest
import torch
from features_reference import assert_columns_close
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compute import valid_ticks

from ma_features import FeatureSpec, FeatureState, Ticks, compute_features, simulate

SPEC = FeatureSpec(depth_imbalance=(1, 3), ofi_levels=3, windows=(1, 4, 9))
FIELDS = ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
          "trade_size", "trade_side")


def batch_features(ticks: Ticks, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    out, names = compute_features(ticks, spec, dtype=torch.float64)
    return dict(zip(names, out.unbind(1), strict=True))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    spec=st.sampled_from([SPEC, FeatureSpec(), FeatureSpec.anchors()]),
)
def test_stream_in_any_chunks_equals_batch(seed, n, cuts, spec):
    ticks = valid_ticks(seed, n)
    bounds = sorted({0, len(ticks), *(c for c in cuts if c < len(ticks))})
    state = FeatureState(spec, dtype=torch.float64)
    streamed = torch.cat(
        [state.update_ticks(ticks[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        or [torch.empty(0, len(spec.names), dtype=torch.float64)]
    )
    assert streamed.shape == (len(ticks), len(spec.names))
    assert_columns_close(streamed, state.names, batch_features(ticks, spec), rel=1e-9)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 5), n=st.integers(1, 40))
def test_many_instruments_at_once_equal_each_alone(seed, batch, n):
    streams = [simulate(n, levels=3, seed=seed + i) for i in range(batch)]
    state = FeatureState(SPEC, batch=batch, dtype=torch.float64)
    rows = []
    for t in range(n):
        event = {f: torch.from_numpy(np.stack([getattr(s, f)[t] for s in streams]))
                 for f in FIELDS}
        rows.append(state.update(event))
    out = torch.stack(rows, dim=1)  # [batch, n, F]
    for i, ticks in enumerate(streams):
        assert_columns_close(out[i], SPEC.names, batch_features(ticks, SPEC), rel=1e-9)


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
    with pytest.raises(ValueError, match="event windows only"):
        FeatureState(FeatureSpec(time_windows=(10,)))
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        FeatureState(batch=0)
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


@pytest.mark.gpu
def test_gpu_update_never_syncs_with_the_host():
    ticks = simulate(20, levels=3, seed=10)
    events = [
        {f: torch.from_numpy(getattr(ticks, f)[t : t + 1]).cuda() for f in FIELDS}
        for t in range(len(ticks))
    ]
    state = FeatureState(SPEC, device="cuda")
    state.update(events[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        rows = [state.update(event) for event in events[1:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = FeatureState(SPEC).update_ticks(ticks)[1:]
    torch.testing.assert_close(torch.cat(rows).cpu(), expected, rtol=1e-5, atol=1e-5)

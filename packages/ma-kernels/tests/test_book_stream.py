import pytest
import torch
from books import random_series
from conftest import DEVICES

import ma_kernels
from ma_kernels import book_stream, reference

SPEC = {"instant": ma_kernels.BOOK_INSTANT_FEATURES, "depth_imbalance": (1, 3), "ofi_levels": 2,
        "rolling": ma_kernels.BOOK_ROLLING_FEATURES, "windows": (1, 5, 40),
        "time_windows": (3, 25)}


@pytest.fixture
def poisoned(monkeypatch):
    """The step's outputs start as NaN (overflow as True): an element the kernel
    fails to write shows."""
    make = book_stream._outputs

    def outputs(*args):
        columns, terms, overflow = make(*args)
        return columns.fill_(float("nan")), terms.fill_(float("nan")), overflow.fill_(True)

    monkeypatch.setattr(book_stream, "_outputs", outputs)


def stream(series_list, spec, device, *, max_events, order):
    """Streams the events of several instruments in the given interleaving,
    a step and a commit per event; returns each instrument's rows of columns."""
    batch, levels = len(series_list), series_list[0]["bid_price"].shape[1]
    capacity = max((*spec["windows"], max_events if spec["time_windows"] else 1))
    state = book_stream.stream_state(batch, levels, capacity, device)
    rows = [[] for _ in range(batch)]
    taken = [0] * batch
    for i in order:
        active = torch.zeros(batch, dtype=torch.bool)
        active[i] = True
        event = {}
        for name in ("time", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
                     "trade_size", "trade_side"):
            # Every instrument's row: the others hold any event (they are not active).
            values = torch.stack([s[name][min(taken[j], len(s[name]) - 1)]
                                  for j, s in enumerate(series_list)])
            dtype = torch.int64 if name == "time" else torch.float64
            event[name] = values.to(device=device, dtype=dtype)
        book = [event[n] for n in ("bid_price", "bid_size", "ask_price", "ask_size")]
        columns, terms, overflow = ma_kernels.book_features_step(
            event["time"], *book, event["trade_price"], event["trade_size"],
            event["trade_side"], active.to(device), state, max_events=max_events, **spec)
        assert not overflow[i].any()
        ma_kernels.book_features_commit(event["time"], *book, active.to(device), terms, state)
        rows[i].append(columns[i].cpu())
        taken[i] += 1
    return [torch.stack(r) for r in rows]


@pytest.mark.parametrize("device", DEVICES)
def test_interleaved_instruments_match_float64_reference(poisoned, device):
    lengths = (120, 80, 1)
    series = [random_series(n, levels=3, seed=10 + i) for i, n in enumerate(lengths)]
    g = torch.Generator().manual_seed(4)
    order = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    order = order[torch.randperm(len(order), generator=g)].tolist()
    streamed = stream(series, SPEC, device, max_events=64, order=order)
    for s, rows in zip(series, streamed, strict=True):
        want = reference.book_features(*s.values(), **SPEC)
        torch.testing.assert_close(rows, want, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_time_window_overflow_is_flagged_and_nan(device):
    s = random_series(10, levels=1, seed=3)
    s["time"] = torch.zeros(10, dtype=torch.int64)  # every event inside every window
    spec = {"instant": ("mid",), "rolling": ("ofi",), "time_windows": (5,)}
    state = book_stream.stream_state(1, 1, 4, device)
    active = torch.ones(1, dtype=torch.bool, device=device)
    flags = []
    for t in range(6):
        event = [s[n][t : t + 1].to(device=device, dtype=torch.int64 if n == "time" else
                                     torch.float64) for n in s]
        columns, terms, overflow = ma_kernels.book_features_step(*event, active, state,
                                                                 max_events=4, **spec)
        flags.append(bool(overflow[0, 0]))
        assert torch.isnan(columns[0, 1]) == flags[-1] and not torch.isnan(columns[0, 0])
        ma_kernels.book_features_commit(*event[:5], active, terms, state)
    assert flags == [False] * 4 + [True] * 2


def test_bad_arguments_are_named():
    s = {n: t[:2] for n, t in random_series(2, levels=2, seed=1).items()}
    state = book_stream.stream_state(2, 2, 8)
    args = [s["time"], *(s[n].double() for n in list(s)[1:])]
    active = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="state must be"):
        ma_kernels.book_features_step(*args, active, state[:4], instant=("mid",))
    with pytest.raises(ValueError, match="trade_side must have dtype"):
        ma_kernels.book_features_step(*args[:7], s["trade_side"], active, state,
                                      instant=("mid",))
    with pytest.raises(ValueError, match="bid_price must be"):
        ma_kernels.book_features_step(args[0], args[1][:, :1], *args[2:], active, state,
                                      instant=("mid",))
    with pytest.raises(ValueError, match="ring has 8 slots"):
        ma_kernels.book_features_step(*args, active, state, instant=("mid",), rolling=("ofi",),
                                      windows=(9,))
    with pytest.raises(ValueError, match="terms must have shape"):
        ma_kernels.book_features_commit(*args[:5], active, torch.zeros(2, 5, dtype=torch.float64),
                                        state)


@pytest.mark.gpu
def test_cuda_agrees_with_cpu_and_captures_in_a_graph():
    series = [random_series(50, levels=3, seed=20 + i) for i in range(5)]
    order = [i for _ in range(50) for i in range(5)]
    on_cpu = stream(series, SPEC, "cpu", max_events=64, order=order)
    on_gpu = stream(series, SPEC, "cuda", max_events=64, order=order)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, equal_nan=True)
    # A step and a commit captured once, replayed on fresh events.
    state = book_stream.stream_state(5, 3, 64, "cuda")
    event = {n: torch.stack([s[n][0] for s in series]).cuda() for n in series[0]}
    event = {n: t.double() if n != "time" else t for n, t in event.items()}
    book = [event[n] for n in ("bid_price", "bid_size", "ask_price", "ask_size")]
    active = torch.ones(5, dtype=torch.bool, device="cuda")

    def step():
        columns, terms, _ = ma_kernels.book_features_step(
            event["time"], *book, event["trade_price"], event["trade_size"], event["trade_side"],
            active, state, max_events=64, **SPEC)
        ma_kernels.book_features_commit(event["time"], *book, active, terms, state)
        return columns

    step()  # warm up on the default stream
    for t in state:
        t.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for t in state:
        t.zero_()
    replayed = []
    for k in range(50):
        for n, t in event.items():
            t.copy_(torch.stack([s[n][k] for s in series]).to(t.dtype))
        graph.replay()
        replayed.append(out.clone())
    for i, rows in enumerate(on_cpu):
        torch.testing.assert_close(torch.stack(replayed)[:, i].cpu(), rows, rtol=1e-12,
                                   atol=1e-12, equal_nan=True)

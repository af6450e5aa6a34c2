import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ma_features import Ticks
from ma_features.labels import (
    DOWN,
    IGNORE_INDEX,
    NUM_CLASSES,
    STATIONARY,
    UP,
    direction_labels,
    direction_labels_from_ticks,
    imbalance_change,
    imbalance_change_from_ticks,
    smoothed_mid_change,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def loop_change(mid, k, reference):
    """Plain-loop reference: (mean(mid[t+1..t+k]) - m) / m, None where undefined."""
    n = len(mid)
    out = []
    for t in range(n):
        if t + k > n - 1 or (reference == "past" and t < k - 1):
            out.append(None)
            continue
        future = sum(mid[t + 1 : t + k + 1]) / k
        m = mid[t] if reference == "current" else sum(mid[t - k + 1 : t + 1]) / k
        out.append((future - m) / m)
    return out


def loop_label(change, alpha):
    if change is None:
        return IGNORE_INDEX
    return UP if change > alpha else DOWN if change < -alpha else STATIONARY


def random_mids(n, seed, start=500.0):
    """A random walk of mids on a 0.01 tick grid, like a real book."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(-1, 2, (n,), generator=g).to(torch.float64) * 0.01
    return start + steps.cumsum(0)


@pytest.mark.parametrize("reference", ["current", "past"])
def test_smoothed_mid_change_matches_loop(reference):
    horizons = [1, 5, 10, 50, 1500]
    mid = random_mids(3500, seed=1)  # k = 1500: windows span 3 blocks of k rows
    change, valid = smoothed_mid_change(mid, horizons, reference)
    assert change.dtype == torch.float64 and valid.dtype == torch.bool
    mids = mid.tolist()
    for h, k in enumerate(horizons):
        ref = loop_change(mids, k, reference)
        expect_valid = torch.tensor([r is not None for r in ref])
        assert torch.equal(valid[:, h], expect_valid)
        expected = torch.tensor([0.0 if r is None else r for r in ref], dtype=torch.float64)
        assert torch.allclose(change[:, h], expected, rtol=0, atol=1e-13)
        assert torch.all(change[~valid[:, h], h] == 0)


@pytest.mark.parametrize("reference", ["current", "past"])
def test_direction_labels_match_loop(reference):
    horizons = [1, 10, 100]
    alpha = [1e-5, 2e-5, 5e-5]
    mid = random_mids(3000, seed=2)
    labels = direction_labels(mid, horizons, alpha, reference)
    assert labels.dtype == torch.int64 and labels.shape == (3000, 3)
    mids = mid.tolist()
    for h, k in enumerate(horizons):
        ref = loop_change(mids, k, reference)
        near_tie = [r is not None and abs(abs(r) - alpha[h]) < 1e-12 for r in ref]
        expected = [loop_label(r, alpha[h]) for r in ref]
        got = labels[:, h].tolist()
        mismatched = [t for t in range(len(ref)) if got[t] != expected[t] and not near_tie[t]]
        assert mismatched == []
        # All three classes occur, so the comparison is not vacuous.
        assert {DOWN, STATIONARY, UP} <= set(got)


def test_class_coding_by_hand():
    assert (DOWN, STATIONARY, UP, IGNORE_INDEX, NUM_CLASSES) == (0, 1, 2, -1, 3)
    mid = torch.tensor([100.0, 101.0, 101.0, 100.0, 100.0])
    # k=1: 100->101 up, 101->101 flat, 101->100 down, 100->100 flat, last has no future.
    assert direction_labels(mid, 1, 0.001).tolist() == [[2], [1], [0], [1], [-1]]
    # k=2, current: (101+101)/2 vs 100 up; 100.5 vs 101 down; 100 vs 101 down; 2 ignored.
    assert direction_labels(mid, 2, 0.001).squeeze(1).tolist() == [2, 0, 0, -1, -1]
    # k=2, past: row 0 has no complete past; 100.5 vs 100.5 flat; 100.5 vs 100 up.
    assert direction_labels(mid, 2, 0.001, "past").squeeze(1).tolist() == [-1, 1, 0, -1, -1]
    # A threshold above every change: all stationary where defined.
    assert direction_labels(mid, 1, 0.5).squeeze(1).tolist() == [1, 1, 1, 1, -1]


@pytest.mark.parametrize("reference", ["current", "past"])
def test_rows_without_complete_window_are_ignored(reference):
    n, k = 200, 7
    labels = direction_labels(random_mids(n, seed=3), [k, 1], 1e-5, reference)
    assert torch.all(labels[n - k :, 0] == IGNORE_INDEX)
    assert torch.all(labels[: n - k, 0] != IGNORE_INDEX) == (reference == "current")
    if reference == "past":
        assert torch.all(labels[: k - 1, 0] == IGNORE_INDEX)
        assert torch.all(labels[k - 1 : n - k, 0] != IGNORE_INDEX)
    assert torch.all(labels[-1, 1] == IGNORE_INDEX) and torch.all(labels[:-1, 1] >= 0)


@pytest.mark.parametrize("reference", ["current", "past"])
def test_series_shorter_than_horizon(reference):
    mid = random_mids(5, seed=4)
    labels = direction_labels(mid, [5, 9], 0.0, reference)
    assert labels.shape == (5, 2) and torch.all(labels == IGNORE_INDEX)
    empty = direction_labels(mid[:0], [1, 3], 0.0, reference)
    assert empty.shape == (0, 2) and empty.dtype == torch.int64


def test_labels_depend_only_on_mids_up_to_t_plus_k():
    k, t = 10, 300
    mid = random_mids(1000, seed=5)
    before = direction_labels(mid, [k, 1], 1e-5)
    changed = mid.clone()
    changed[t + k + 1 :] += torch.rand(len(mid) - t - k - 1, dtype=torch.float64) + 1
    after = direction_labels(changed, [k, 1], 1e-5)
    assert torch.equal(after[: t + 1, 0], before[: t + 1, 0])
    assert not torch.equal(after[:, 0], before[:, 0])
    past_before = smoothed_mid_change(mid, k, "past").value
    past_after = smoothed_mid_change(changed, k, "past").value
    assert torch.equal(past_after[: t + 1], past_before[: t + 1])


def test_ignored_rows_drop_out_of_cross_entropy():
    mid = random_mids(50, seed=6)
    labels = direction_labels(mid, 5, 1e-5).squeeze(1)
    logits = torch.randn(50, NUM_CLASSES, dtype=torch.float64)
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    poisoned = logits.clone()
    poisoned[labels == IGNORE_INDEX] = 1e6
    assert torch.isfinite(loss(logits, labels))
    assert torch.equal(loss(poisoned, labels), loss(logits, labels))


@given(
    steps=st.lists(st.integers(-3, 3), min_size=0, max_size=60),
    k=st.integers(1, 12),
    alpha=st.sampled_from([0.0, 1e-5, 1e-4, 1e-3]),
    reference=st.sampled_from(["current", "past"]),
)
@settings(max_examples=200, deadline=None)
def test_labels_match_loop_property(steps, k, alpha, reference):
    # Integer-tick mids: changes are exact ratios far from float noise at these alphas.
    mids = [100.0 + 0.01 * s for s in np.cumsum([0, *steps])]
    labels = direction_labels(torch.tensor(mids, dtype=torch.float64), k, alpha, reference)
    got = labels.squeeze(1).tolist()
    if alpha == 0:
        # The sign of the change in exact integer ticks: a flat future is stationary.
        ticks = [int(t) for t in np.cumsum([0, *steps])]
        expected = [loop_label(exact_sign(ticks, t, k, reference), 0) for t in range(len(ticks))]
        assert got == expected
    else:
        ref = loop_change(mids, k, reference)
        expected = [loop_label(r, alpha) for r in ref]
        near_tie = [r is not None and abs(abs(r) - alpha) < 1e-12 for r in ref]
        assert all(g == e or tie for g, e, tie in zip(got, expected, near_tie, strict=True))


def exact_sign(ticks, t, k, reference):
    """Sign of k * (m+ - m) in integer ticks, None where undefined."""
    if t + k > len(ticks) - 1 or (reference == "past" and t < k - 1):
        return None
    m = k * ticks[t] if reference == "current" else sum(ticks[t - k + 1 : t + 1])
    diff = sum(ticks[t + 1 : t + k + 1]) - m
    return (diff > 0) - (diff < 0)


@given(values=st.lists(st.floats(-1, 1), min_size=0, max_size=40), k=st.integers(1, 8))
@settings(max_examples=100, deadline=None)
def test_imbalance_change_matches_loop(values, k):
    imbalance = torch.tensor(values, dtype=torch.float64)
    value, valid = imbalance_change(imbalance, [k, 1])
    assert value.shape == valid.shape == (len(values), 2)
    for h, kk in enumerate([k, 1]):
        for t in range(len(values)):
            if t + kk < len(values):
                assert valid[t, h] and value[t, h].item() == values[t + kk] - values[t]
            else:
                assert not valid[t, h] and value[t, h].item() == 0.0
    assert not torch.isnan(value).any()


def test_imbalance_change_keeps_dtype():
    value, valid = imbalance_change(torch.rand(20, dtype=torch.float32), 3)
    assert value.dtype == torch.float32 and valid.dtype == torch.bool
    assert valid[:17].all() and not valid[17:].any()


def make_ticks(bid, ask, bid_size, ask_size):
    n = len(bid)
    column = lambda v: np.asarray(v, dtype=np.float64).reshape(n, 1)  # noqa: E731
    return Ticks(
        time=np.arange(n, dtype=np.int64),
        event=np.ones(n, dtype=np.int8),
        bid_price=column(bid),
        bid_size=column(bid_size),
        ask_price=column(ask),
        ask_size=column(ask_size),
        trade_price=np.zeros(n),
        trade_size=np.zeros(n),
        trade_side=np.zeros(n, dtype=np.int8),
    )


def test_ticks_wrappers_use_level1_mid_and_imbalance():
    bid = [99.99, 100.00, 100.00, 99.98, 99.99, 100.01]
    ask = [100.01, 100.02, 100.01, 100.00, 100.01, 100.03]
    bid_size = [5.0, 3.0, 1.0, 4.0, 2.0, 6.0]
    ask_size = [1.0, 3.0, 7.0, 2.0, 2.0, 3.0]
    ticks = make_ticks(bid, ask, bid_size, ask_size)
    mid = (torch.tensor(bid, dtype=torch.float64) + torch.tensor(ask, dtype=torch.float64)) / 2
    imbalance = torch.tensor(bid_size, dtype=torch.float64) - torch.tensor(ask_size)
    imbalance = imbalance / (torch.tensor(bid_size) + torch.tensor(ask_size)).double()
    for reference in ("current", "past"):
        assert torch.equal(
            direction_labels_from_ticks(ticks, [1, 2], 1e-5, reference),
            direction_labels(mid, [1, 2], 1e-5, reference),
        )
    value, valid = imbalance_change_from_ticks(ticks, [1, 3])
    expected, expected_valid = imbalance_change(imbalance, [1, 3])
    assert torch.allclose(value, expected, rtol=0, atol=1e-15)
    assert torch.equal(valid, expected_valid)


def test_ticks_with_empty_best_level_is_an_error():
    ticks = make_ticks([99.0, math.nan, 99.0], [101.0, 101.0, 101.0], [1, 0, 1], [1, 1, 1])
    with pytest.raises(ValueError, match=r"bid_price\[1, 0\] is nan"):
        direction_labels_from_ticks(ticks, 1, 0.0)


@pytest.mark.parametrize(
    "mid, horizons, alpha, match",
    [
        (torch.tensor([1.0, math.nan, 2.0]), 1, 0.0, r"mid\[1\] is nan"),
        (torch.tensor([1.0, 2.0, math.inf]), 1, 0.0, r"mid\[2\] is inf"),
        (torch.tensor([1.0, 0.0, 2.0]), 1, 0.0, r"mid\[1\] is 0.0: mid prices must be positive"),
        (torch.ones(3, 2), 1, 0.0, "mid must have 1 dims"),
        (torch.ones(3, dtype=torch.int64), 1, 0.0, "floating"),
        ([1.0, 2.0], 1, 0.0, "torch.Tensor"),
        (torch.ones(3), [], 0.0, "horizons must not be empty"),
        (torch.ones(3), [1, 0], 0.0, "positive int"),
        (torch.ones(3), 2.0, 0.0, "positive int"),
        (torch.ones(3), [1, 2], [0.1], "alpha has 1 values for 2 horizons"),
        (torch.ones(3), 1, -0.1, "alpha must be a finite number >= 0"),
        (torch.ones(3), 1, math.nan, "alpha must be a finite number >= 0"),
    ],
)
def test_bad_input_is_a_clear_error(mid, horizons, alpha, match):
    with pytest.raises(ValueError, match=match):
        direction_labels(mid, horizons, alpha)


def test_bad_reference_and_imbalance():
    with pytest.raises(ValueError, match="reference must be 'current' or 'past'"):
        smoothed_mid_change(torch.ones(3), 1, "future")
    with pytest.raises(ValueError, match=r"imbalance\[0\] is nan"):
        imbalance_change(torch.tensor([math.nan, 0.0]), 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reference", ["current", "past"])
def test_device_matches_cpu(device, reference):
    mid = random_mids(5000, seed=7)
    cpu = smoothed_mid_change(mid, [1, 20, 2000], reference)
    dev = smoothed_mid_change(mid.to(device), [1, 20, 2000], reference)
    assert dev.value.device.type == device
    assert torch.allclose(dev.value.cpu(), cpu.value, rtol=0, atol=1e-13)
    assert torch.equal(dev.valid.cpu(), cpu.valid)
    labels = direction_labels(mid.to(device, torch.float32), [1, 20], 1e-4, reference)
    assert labels.device.type == device and labels.dtype == torch.int64
    imbalance = torch.rand(100, device=device) * 2 - 1
    value, valid = imbalance_change(imbalance, [1, 5])
    assert value.device.type == device and valid.device.type == device

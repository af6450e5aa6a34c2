import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ticks_factory import random_ticks

import ma_kernels
from ma_features import TickDataError, Ticks, bad_rows, validate
from ma_features.validation import REASONS


def full_book(seed=0, n=6, levels=2):
    """Valid ticks whose every level is filled, so a single change makes one bad row."""
    t = random_ticks(seed, n, levels)
    filled = {}
    for side, sign in (("bid", -1), ("ask", 1)):
        filled[f"{side}_price"] = 100.0 + sign * np.arange(1, levels + 1) * np.ones((n, 1))
        filled[f"{side}_size"] = np.full((n, levels), 5.0)
    return Ticks(**{**t.__dict__, **filled, "time": np.arange(n, dtype=np.int64)})


def with_value(t, field, index, value):
    array = getattr(t, field).copy()
    array[index] = value
    return Ticks(**{**t.__dict__, field: array})


CASES = [
    ("bad_event", "event", 2, 9, "event"),
    ("time_not_monotonic", "time", 2, -5, "time"),
    ("bad_size", "bid_size", (2, 1), -1.0, "bid_size_2"),
    ("bad_size", "ask_size", (2, 0), np.nan, "ask_size_1"),
    ("bad_price", "ask_price", (2, 0), np.inf, "ask_price_1"),
    ("bad_price", "bid_price", (2, 1), np.nan, "bid_price_2"),
    ("bad_price", "bid_price", (2, 1), -99.0, "bid_price_2"),
    ("bad_price", "bid_price", (2, 1), 0.0, "bid_price_2"),
    ("crossed_book", "bid_price", (2, 0), 101.0, "bid_price_1"),
    ("unsorted_levels", "ask_price", (2, 1), 100.5, "ask_price_2"),
    ("bad_trade", "trade_side", 2, 3, "trade_side"),
]


@pytest.mark.parametrize(("reason", "field", "index", "value", "column"), CASES)
def test_each_check_raises_naming_row_and_column_or_drops_the_row(
    reason, field, index, value, column
):
    good = full_book()
    good = Ticks(**{**good.__dict__, "trade_size": np.zeros(6), "trade_price": np.zeros(6),
                    "trade_side": np.zeros(6, np.int8)})  # fmt: skip
    assert validate(good)[1].rows_dropped == 0
    bad = with_value(good, field, index, value)
    with pytest.raises(TickDataError, match=rf"Ticks row 2, column '{column}': ") as info:
        validate(bad)
    assert info.value.reason == reason
    assert REASONS[reason] in str(info.value)
    kept, report = validate(bad, on_error="drop")
    assert kept.equals(good[np.array([0, 1, 3, 4, 5])])
    assert report.dropped == {reason: 1} and report.rows_in == 6 and report.rows_out == 5


def test_crossed_means_locked_too_and_ignores_an_empty_side():
    t = with_value(full_book(), "bid_price", (1, 0), 101.0)  # bid 101 == ask 101: locked
    with pytest.raises(ValueError, match="row 1, column 'bid_price_1': crossed book"):
        validate(t)
    t = with_value(
        with_value(t, "ask_size", (1, slice(None)), 0.0), "ask_price", (1, slice(None)), np.nan
    )
    assert validate(t)[1].rows_dropped == 0


def test_empty_level_price_and_a_quote_below_a_gap():
    t = with_value(full_book(), "bid_size", (3, 1), 0.0)
    with pytest.raises(ValueError, match="row 3, column 'bid_price_2': price on an empty level"):
        validate(t)
    t = with_value(with_value(full_book(), "ask_size", (4, 0), 0.0), "ask_price", (4, 0), np.nan)
    with pytest.raises(ValueError, match="row 4, column 'ask_price_2': levels out of order"):
        validate(t)


def test_trade_fields_must_agree():
    t = full_book()
    no_trade = t.trade_size == 0
    i = int(np.argmax(no_trade))
    with pytest.raises(ValueError, match=rf"row {i}, column 'trade_price': inconsistent trade"):
        validate(with_value(t, "trade_price", i, 1.5))


def test_drop_of_unordered_time_leaves_it_monotonic_and_counts_rows_once():
    t = full_book(n=8)
    t = with_value(t, "time", 2, 100)  # an outlier: rows after it are before it
    t = with_value(t, "bid_size", (5, 0), -1.0)
    kept, report = validate(t, on_error="drop")
    assert np.array_equal(kept.time, [0, 1, 100])
    assert report.dropped == {"time_not_monotonic": 5, "bad_size": 1}
    assert report.rows_dropped == 5  # row 5 fails twice, counted once here


def test_drop_logs_a_warning_with_the_counts(caplog):
    t = with_value(full_book(), "event", 0, 0)
    with caplog.at_level(logging.WARNING, logger="ma_features"):
        validate(t, on_error="drop", source="feed")
    assert "feed: kept 5 of 6 rows (dropped bad_event: 1)" in caplog.text


def test_raise_counts_all_bad_rows_and_on_error_is_checked():
    t = with_value(with_value(full_book(), "event", 1, 0), "ask_size", (4, 1), -2.0)
    with pytest.raises(ValueError, match=r"row 1, .*\(2 bad row\(s\) in all"):
        validate(t)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'drop', got 'skip'"):
        validate(t, on_error="skip")


def test_a_negative_trade_price_on_an_execution_is_refused():
    t = full_book()
    i = int(np.argmax(t.trade_size > 0))
    with pytest.raises(ValueError, match=rf"row {i}, column 'trade_price': NaN, infinite or "
                                         "non-positive price"):
        validate(with_value(t, "trade_price", i, -1.5))


def first_reason(masks: dict[str, np.ndarray], n: int) -> list[str | None]:
    """Each row's first reason in the precedence of ma_kernels' device checks."""
    order = ma_kernels.book_stream.TICK_REASONS
    return [next((r for r in order if r in masks and masks[r][i]), None) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_device_checks_refuse_what_bad_rows_refuses(data):
    """ma_kernels.book_tick_reasons (what the streaming engine checks on the
    device) gives each row the first of bad_rows' reasons, then a missing best
    quote, on books corrupted at random places."""
    levels = data.draw(st.integers(1, 3))
    t = full_book(n=12, levels=levels)
    values = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 99.0, 101.0, 150.0, 3.0])
    for _ in range(data.draw(st.integers(0, 6))):
        field = data.draw(st.sampled_from(["bid_price", "bid_size", "ask_price", "ask_size",
                                           "trade_price", "trade_size", "trade_side", "event"]))
        row = data.draw(st.integers(0, 11))
        index = (row, data.draw(st.integers(0, levels - 1))) if field.endswith(
            ("_price", "_size")) and not field.startswith("trade") else row
        value = data.draw(values)
        if field in ("trade_side", "event"):
            value = data.draw(st.integers(-3, 9))
        t = with_value(t, field, index, value)
    masks = bad_rows(t)
    masks["empty_side"] = ~(np.isfinite(t.bid_price[:, 0]) & np.isfinite(t.ask_price[:, 0]))
    tensors = t.to_tensors(dtype=torch.float64)
    state = ma_kernels.book_stream.stream_state(len(t), levels, 1)  # no event before: no time
    reasons = ma_kernels.book_tick_reasons(
        torch.from_numpy(t.event.astype(np.int64)), tensors["time"],
        *(tensors[n] for n in ("bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
                               "trade_size")), tensors["trade_side"].double(), state)
    names = [None, *ma_kernels.book_stream.TICK_REASONS]
    assert [names[r] for r in reasons.tolist()] == first_reason(masks, len(t))

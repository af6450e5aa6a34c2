import csv
from pathlib import Path

import numpy as np
import pytest

from ma_features import (
    EventType,
    TickDataError,
    lobster,
    lobster_sample,
    lobster_sample_paths,
    read_lobster,
)

MESSAGE, ORDERBOOK = lobster_sample_paths()


def raw_messages():
    with open(MESSAGE) as f:
        return list(csv.reader(f))


def test_sample_is_shipped_and_read_whole():
    ticks, report = read_lobster(MESSAGE, ORDERBOOK)
    # 999 rows: `wc -l` says 998 because the last line has no newline.
    assert len(ticks) == len(raw_messages()) == 999
    assert ticks.levels == 10
    assert report.rows_dropped == 0
    assert lobster_sample().equals(ticks)
    assert read_lobster(MESSAGE)[0].equals(ticks)  # orderbook file found from the name


def test_first_and_last_rows_match_the_raw_files():
    t = lobster_sample()
    # line 1: 34200.004241176,1,16113575,18,5853300,1
    # orderbook: 5859400,200,5853300,18, ... level 10: 5879000,500,5842700,300
    assert t.time[0] == 34_200_004_241_176 and t.event[0] == EventType.SUBMIT
    assert (t.ask_price[0, 0], t.ask_size[0, 0], t.bid_price[0, 0], t.bid_size[0, 0]) == (
        585.94, 200.0, 585.33, 18.0)  # fmt: skip
    assert (t.ask_price[0, 9], t.ask_size[0, 9], t.bid_price[0, 9], t.bid_size[0, 9]) == (
        587.90, 500.0, 584.27, 300.0)  # fmt: skip
    assert (t.trade_size[0], t.trade_price[0], t.trade_side[0]) == (0.0, 0.0, 0)
    # last line: 34249.086375027,1,18259338,18,5853500,1
    # orderbook: 5857100,100,5853500,18, ... level 10: 5860300,100,5849900,2
    assert t.time[-1] == 34_249_086_375_027
    assert (t.ask_price[-1, 0], t.bid_price[-1, 0], t.bid_size[-1, 0]) == (585.71, 585.35, 18.0)
    assert (t.ask_price[-1, 9], t.bid_price[-1, 9], t.bid_size[-1, 9]) == (586.03, 584.99, 2.0)


def test_times_with_fewer_than_nine_decimals_are_exact():
    t = lobster_sample()
    assert t.time[15] == 34_200_205_596_600  # line 16: 34200.2055966
    assert t.time[1] == 34_200_004_260_640  # line 2: 34200.00426064
    assert np.all(np.diff(t.time) >= 0)


def test_executions_are_trades_with_the_aggressor_side():
    t = lobster_sample()
    raw = raw_messages()
    executions = [i for i, r in enumerate(raw) if r[1] in ("4", "5")]
    assert np.array_equal(np.flatnonzero(t.trade_size > 0), executions)
    assert len(executions) == 159
    # line 36: 34200.275016159,4,5740544,40,5857400,-1: a sell order hit by a buyer
    assert (t.trade_size[35], t.trade_price[35], t.trade_side[35]) == (40.0, 585.74, 1)
    # line 38: 34200.275057494,4,3647217,1,5857300,1: a buy order hit by a seller
    assert (t.trade_size[37], t.trade_price[37], t.trade_side[37]) == (1.0, 585.73, -1)
    sides = np.array([-int(raw[i][5]) for i in executions])
    assert np.array_equal(t.trade_side[executions], sides)


def test_prices_are_dollars_and_the_book_is_not_crossed():
    t = lobster_sample()
    assert np.all((t.bid_price > 580) & (t.bid_price < 590))
    assert np.all((t.ask_price > 580) & (t.ask_price < 590))
    assert np.all(t.bid_price[:, 0] < t.ask_price[:, 0])


def test_levels_and_event_filter():
    t = lobster_sample()
    three = lobster_sample(levels=3)
    assert three.levels == 3 and np.array_equal(three.bid_size, t.bid_size[:, :3])
    trades = lobster_sample(events={4, 5})
    assert len(trades) == 159 and np.all(trades.trade_size > 0)
    assert trades.equals(t[np.isin(t.event, [4, 5])])
    with pytest.raises(ValueError, match="levels=11, but .* has 10 level"):
        lobster_sample(levels=11)


def write(path, rows):
    path.write_text("\n".join(rows) + "\n")
    return path


BOOK_1 = "1000000,10,990000,5"  # ask 100.00 x 10, bid 99.00 x 5
EMPTY_1 = "9999999999,0,-9999999999,0"


def small(tmp_path, messages, books):
    m = write(tmp_path / "X_message_2.csv", messages)
    write(tmp_path / "X_orderbook_2.csv", books)
    return m


def test_placeholders_cross_and_halt(tmp_path):
    m = small(
        tmp_path,
        ["1.5,1,7,5,990000,1", "2,6,-1,300,995000,-1", "3,7,0,0,-1,-1", "4,7,0,0,1,-1"],
        [f"{BOOK_1},{EMPTY_1}"] * 2 + [f"{EMPTY_1},{EMPTY_1}", f"{BOOK_1},1010000,1,980000,2"],
    )
    t, _ = read_lobster(m)
    assert np.array_equal(t.time, [1_500_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000])
    assert np.isnan(t.bid_price[0, 1]) and np.isnan(t.ask_price[0, 1])
    assert t.bid_size[0, 1] == 0 and t.ask_size[0, 1] == 0
    assert np.isnan(t.bid_price[2]).all() and np.isnan(t.ask_price[2]).all()
    # an auction cross is a trade with no aggressor; halts are events without trades
    assert (t.trade_size[1], t.trade_price[1], t.trade_side[1]) == (300.0, 99.5, 0)
    assert np.array_equal(t.event[2:], [EventType.HALT, EventType.HALT])
    assert np.all(t.trade_size[2:] == 0) and np.all(t.trade_price[2:] == 0)


def test_mismatched_lengths_always_raise(tmp_path):
    m = small(tmp_path, ["1,1,7,5,990000,1", "2,1,8,5,990000,1"], [f"{BOOK_1},{EMPTY_1}"])
    for on_error in ("raise", "drop"):
        with pytest.raises(
            ValueError, match=r"X_message_2\.csv has 2 rows but .*X_orderbook_2\.csv has 1"
        ):
            read_lobster(m, on_error=on_error)


def test_malformed_message_names_file_line_and_column(tmp_path):
    m = small(
        tmp_path,
        ["1,1,7,5,990000,1", "2,1,8,5,990000,0", "3,1,8,abc,990000,1", "4,1,9,5,990000,1"],
        [f"{BOOK_1},{EMPTY_1}"] * 4,
    )
    with pytest.raises(
        TickDataError,
        match=r"X_message_2\.csv, line 2, column 6 \('direction'\): malformed value '0'",
    ):
        read_lobster(m)
    t, report = read_lobster(m, on_error="drop")
    assert np.array_equal(t.time, [1_000_000_000, 4_000_000_000])
    assert report.dropped == {"malformed": 2}


def test_time_with_too_many_decimals_is_malformed(tmp_path):
    m = small(tmp_path, ["1.0000000001,1,7,5,990000,1"], [f"{BOOK_1},{EMPTY_1}"])
    with pytest.raises(
        ValueError, match=r"line 1, column 1 \('time'\): malformed value '1.0000000001'"
    ):
        read_lobster(m)


def test_bad_orderbook_rows_name_the_orderbook_file_and_column(tmp_path):
    m = small(
        tmp_path,
        ["1,1,7,5,990000,1", "2,1,8,5,990000,1", "3,1,9,5,990000,1"],
        [f"{BOOK_1},{EMPTY_1}", f"{BOOK_1},{EMPTY_1},1", "1000000,10,1000000,5," + EMPTY_1],
    )
    with pytest.raises(
        ValueError, match=r"X_orderbook_2\.csv, line 2: malformed row, expected 8 fields, found 9"
    ):
        read_lobster(m)
    fixed = write(
        tmp_path / "X_orderbook_2.csv",
        [f"{BOOK_1},{EMPTY_1}"] * 2 + ["1000000,10,1000000,5," + EMPTY_1],
    )
    with pytest.raises(
        ValueError, match=r"X_orderbook_2\.csv, line 3, column 3 \('bid price 1'\): crossed book"
    ):
        read_lobster(m, fixed)
    t, report = read_lobster(m, fixed, on_error="drop")
    assert len(t) == 2 and report.dropped == {"crossed_book": 1}


def test_orderbook_width_must_be_levels_of_four(tmp_path):
    m = small(tmp_path, ["1,1,7,5,990000,1"], [f"{BOOK_1},1"])
    with pytest.raises(ValueError, match="5 fields, expected 4 per level"):
        read_lobster(m)


def read_exact(monkeypatch, *args, **kwargs):
    """read_lobster on its field-by-field path only."""
    with monkeypatch.context() as m:
        m.setattr(lobster, "_read_fast", lambda *a: None)
        return read_lobster(*args, **kwargs)


def write_varied_sample(tmp_path):
    """The sample with empty levels and every event type, CRLF line ends and a blank last line.

    Some deletes become partial cancels (2), some rows become crosses (6) and halts (7), and on
    some rows one side of the book is empty from a random level down.
    """
    rng = np.random.default_rng(0)
    message = [line.split(",") for line in MESSAGE.read_text().splitlines()]
    book = [line.split(",") for line in ORDERBOOK.read_text().splitlines()]
    for i in rng.choice(len(book), 200, replace=False):
        side = int(rng.integers(2))  # 0 ask, 1 bid
        for level in range(int(rng.integers(10)), 10):
            book[i][4 * level + 2 * side : 4 * level + 2 * side + 2] = [
                ("9999999999", "-9999999999")[side], "0"]  # fmt: skip
    for i in rng.choice(len(message), 60, replace=False):
        kind = i % 3
        if kind == 0 and message[i][1] == "3":
            message[i][1] = "2"
        elif kind == 1:
            message[i][1:] = ["6", "-1", "300", message[i][4], "-1"]
        elif kind == 2:
            message[i][1:] = ["7", "0", "0", str(rng.integers(-1, 2)), "-1"]
    m = tmp_path / "V_message_10.csv"
    m.write_bytes(("\r\n".join(",".join(r) for r in message) + "\r\n\r\n").encode())
    (tmp_path / "V_orderbook_10.csv").write_bytes(
        ("\r\n".join(",".join(r) for r in book) + "\r\n").encode()
    )
    return m


@pytest.mark.parametrize("which", ["sample", "varied"])
def test_fast_and_field_by_field_paths_give_identical_ticks(tmp_path, monkeypatch, which):
    m = MESSAGE if which == "sample" else write_varied_sample(tmp_path)
    b = Path(str(m).replace("message", "orderbook"))
    assert lobster._read_fast(m, b, None) is not None  # the fast path is the one taken
    ticks = read_lobster(m)[0]
    assert len(ticks) == 999
    if which == "varied":
        assert set(ticks.event.tolist()) == {int(e) for e in EventType}
        assert np.isnan(ticks.bid_price).any() and np.isnan(ticks.ask_price).any()
    assert ticks.equals(read_exact(monkeypatch, m)[0])
    for kwargs in ({"levels": 3}, {"events": {4, 5, 6}}):
        assert read_lobster(m, **kwargs)[0].equals(read_exact(monkeypatch, m, **kwargs)[0])


def test_fields_an_arrow_cast_alone_would_misread(tmp_path, monkeypatch):
    # leading zeros up to 19 digits are good fields, read by the fast path too
    m = small(tmp_path, ["1,1,7,5,990000,1"], [f"1000000,0010,990000,{'0' * 18}5,{EMPTY_1}"])
    assert lobster._read_fast(m, tmp_path / "X_orderbook_2.csv", None) is not None
    ticks = read_lobster(m)[0]
    assert ticks.equals(read_exact(monkeypatch, m)[0])
    assert (ticks.ask_size[0, 0], ticks.bid_size[0, 0]) == (10, 5)
    # spaces, hexadecimal and over 19 digits are malformed, though arrow casts them
    for value in (" 10", "0x10", "0" * 19 + "10"):
        small(tmp_path, ["1,1,7,5,990000,1"], [f"1000000,{value},990000,5,{EMPTY_1}"])
        with pytest.raises(
            TickDataError, match=rf"line 1, column 2 \('ask size 1'\): malformed value '{value}'"
        ):
            read_lobster(m)


def test_explicit_plus_signs_are_read(tmp_path):
    # "+" passes the integer pattern; arrow's cast alone would refuse it.
    m = small(tmp_path, ["1,4,7,+30,+1000000,-1"], [f"{BOOK_1},1010000,+1,980000,2"])
    t, _ = read_lobster(m)
    assert (t.trade_size[0], t.trade_price[0], t.trade_side[0]) == (30.0, 100.0, 1)
    assert t.ask_size[0, 1] == 1.0

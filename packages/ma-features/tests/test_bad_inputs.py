"""Corrupted files into the readers (CSV, LOBSTER, Parquet): a bad field in
every column and row position, truncation at any byte, other encodings.
Each is refused with an error naming the file, line and column, or read
under the documented policy; rows before the damage are never lost
(docs/reliability.md)."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ma_features
from ma_features import read_csv, read_lobster, read_parquet, write_csv, write_parquet

ROWS, LEVELS = 12, 2
JUNK = st.sampled_from(["", "x", "nan", "inf", "-inf", "-1", "0", "1e400", "0x10", " ", "1.5",
                        "99999999999999999999", "--1", "1e-400", "-0", "+3", "\x00", "é"])
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def ticks():
    return ma_features.simulate(ROWS, levels=LEVELS, seed=3)


def _rows(t: ma_features.Ticks) -> list[tuple]:
    """Each row as comparable text (NaN equal to NaN)."""
    return [tuple(map(repr, row)) for row in ma_features.to_frame(t).itertuples(index=False)]


def _prefix_kept(read: ma_features.Ticks, original: ma_features.Ticks, damaged: int) -> None:
    """Rows before ``damaged`` come back as they were; no row is invented."""
    got, want = _rows(read), _rows(original)
    assert got[:damaged] == want[:damaged]
    assert set(got) - set(want) <= {got[i] for i in range(damaged, len(got))}


@FUZZ
@given(row=st.integers(0, ROWS - 1), column=st.integers(0, 2 + 4 * LEVELS + 2), junk=JUNK)
def test_a_bad_csv_field_is_named_or_dropped_keeping_the_rest(ticks, tmp_path, row, column, junk):
    path = tmp_path / "t.csv"
    write_csv(ticks, path)
    lines = path.read_text().split("\n")
    fields = lines[row + 1].split(",")
    fields[column] = junk
    lines[row + 1] = ",".join(fields)
    path.write_bytes("\n".join(lines).encode())
    try:
        read, _ = read_csv(path)
    except ValueError as e:
        assert re.search(r"t\.csv, line \d+, column \d+ \('\w+'\)", str(e)), str(e)
    else:
        _prefix_kept(read, ticks, row)
    kept, report = read_csv(path, on_error="drop")
    assert report.rows_in == ROWS and report.rows_out == len(kept)
    _prefix_kept(kept, ticks, row)


@FUZZ
@given(cut=st.integers(0, 4000))
def test_a_truncated_csv_reads_whole_rows_or_names_the_cut_line(ticks, tmp_path, cut):
    path = tmp_path / "t.csv"
    write_csv(ticks, path)
    data = path.read_bytes()
    path.write_bytes(data[: cut % len(data)])
    try:
        read, _ = read_csv(path)
    except ValueError as e:
        # a cut in the header: the columns it lost are named
        assert re.search(r"t\.csv(, line \d+|: empty file|: missing column)", str(e)), str(e)
    else:
        assert _rows(read) == _rows(ticks)[: len(read)]


@pytest.mark.parametrize("encode, message", [
    (lambda b: b.decode().encode("utf-16"), r"t\.csv, line 1: not UTF-8 text \(byte 0xff\)"),
    (lambda b: b.replace(b"\n", b"\n\xe9", 3)[:-1],
     r"t\.csv, line 2: not UTF-8 text \(byte 0xe9\)"),
    (lambda b: b.replace(b",", b";"), r"t\.csv: missing column"),
    (lambda b: b.replace(b"\n", b"\n\n", 2),
     r"t\.csv, line 2: malformed row, expected 13 fields, found 1"),
])
def test_other_encodings_and_separators_are_named(ticks, tmp_path, encode, message):
    path = tmp_path / "t.csv"
    write_csv(ticks, path)
    path.write_bytes(encode(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_csv(path)


@pytest.mark.parametrize("change", [lambda b: b"\xef\xbb\xbf" + b,
                                    lambda b: b.replace(b"\n", b"\r\n")])
def test_a_byte_order_mark_and_crlf_line_ends_are_read(ticks, tmp_path, change):
    path = tmp_path / "t.csv"
    write_csv(ticks, path)
    path.write_bytes(change(path.read_bytes()))
    assert read_csv(path)[0].equals(ticks)


def _lobster(tmp_path, ticks):
    """A LOBSTER pair holding ``ticks``' book (trades not needed here)."""
    messages = [f"{1 + i * 0.5:.1f},1,{i + 1},5,{int(ticks.bid_price[i, 0] * 10000)},1"
                for i in range(ROWS)]
    books = [",".join(f"{int(round(ticks.ask_price[i, k] * 10000))},{int(ticks.ask_size[i, k])},"
                      f"{int(round(ticks.bid_price[i, k] * 10000))},{int(ticks.bid_size[i, k])}"
                      for k in range(LEVELS)) for i in range(ROWS)]
    m, b = tmp_path / "X_message_2.csv", tmp_path / "X_orderbook_2.csv"
    m.write_text("\n".join(messages) + "\n")
    b.write_text("\n".join(books) + "\n")
    return m, b


@FUZZ
@given(row=st.integers(0, ROWS - 1), book=st.booleans(), column=st.integers(0, 4 * LEVELS - 1),
       junk=JUNK)
def test_a_bad_lobster_field_is_named_or_dropped(ticks, tmp_path, row, book, column, junk):
    m, b = _lobster(tmp_path, ticks)
    original, _ = read_lobster(m)
    path = b if book else m
    lines = path.read_text().split("\n")
    fields = lines[row].split(",")
    fields[column % len(fields)] = junk
    lines[row] = ",".join(fields)
    path.write_bytes("\n".join(lines).encode())
    try:
        read, _ = read_lobster(m)
    except ValueError as e:
        assert re.search(r"X_(message|orderbook)_2\.csv, line \d+(, column \d+)?", str(e)), str(e)
    else:
        _prefix_kept(read, original, row)
    try:
        kept, report = read_lobster(m, on_error="drop")
    except ValueError as e:  # a row of another width: the files no longer pair
        assert "fields" in str(e), str(e)
    else:
        assert report.rows_in == ROWS and report.rows_out == len(kept)
        _prefix_kept(kept, original, row)


def test_empty_lobster_files_say_they_are_empty(tmp_path):
    m, b = tmp_path / "X_message_1.csv", tmp_path / "X_orderbook_1.csv"
    m.write_bytes(b"")
    b.write_bytes(b"")
    with pytest.raises(ValueError, match="X_message_1.csv and .*X_orderbook_1.csv are empty"):
        read_lobster(m)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 0.999))
def test_a_truncated_parquet_file_is_named(ticks, tmp_path, cut):
    path = tmp_path / "t.parquet"
    write_parquet(ticks, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(ValueError, match=r"t\.parquet"):
        read_parquet(path)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["ask_size_2"]), r"missing column\(s\) \['ask_size_2'\]"),
    (lambda f: f.assign(bid_price_1=f["bid_price_1"].astype(str)), "'bid_price_1' has dtype"),
    (lambda f: f.assign(time=f["time"].astype(float)), "'time' has dtype float64, expected int"),
    (lambda f: f.assign(ask_price_1=-f["ask_price_1"]), "row 0, column 'ask_price_1'"),
])
def test_parquet_columns_of_the_wrong_kind_are_named(ticks, tmp_path, change, message):
    path = tmp_path / "t.parquet"
    change(ma_features.to_frame(ticks)).to_parquet(path)
    with pytest.raises(ValueError, match=message):
        read_parquet(path)


def test_validation_finds_every_row_it_drops(ticks):
    bad = ticks[np.arange(len(ticks))]
    bad.bid_price[3, 0] = bad.ask_price[3, 0] + 1  # crossed
    bad.trade_price[5] = -1.0
    bad.trade_size[5] = 1.0
    bad.trade_side[5] = 1
    kept, report = ma_features.validate(bad, on_error="drop")
    assert report.dropped == {"crossed_book": 1, "bad_price": 1} and len(kept) == ROWS - 2

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ticks_factory import random_ticks

from ma_features import (
    TickDataError,
    from_frame,
    lobster_sample,
    lobster_sample_paths,
    read_csv,
    read_parquet,
    read_ticks,
    source_of,
    to_frame,
    write_csv,
    write_parquet,
)
from ma_features.io import columns

shapes = st.tuples(st.integers(0, 2**32), st.integers(0, 30), st.integers(1, 4))


def test_column_layout():
    assert columns(2) == [
        "time", "event",
        "bid_price_1", "bid_price_2", "bid_size_1", "bid_size_2",
        "ask_price_1", "ask_price_2", "ask_size_1", "ask_size_2",
        "trade_price", "trade_size", "trade_side",
    ]  # fmt: skip
    assert list(to_frame(random_ticks(0, 3, 2)).columns) == columns(2)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_frame_round_trip_is_exact(shape):
    t = random_ticks(*shape)
    back, report = from_frame(to_frame(t))
    assert back.equals(t)
    assert report.rows_dropped == 0


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_csv_round_trip_is_exact(tmp_path_factory, shape):
    path = tmp_path_factory.mktemp("csv") / "ticks.csv"
    t = random_ticks(*shape)
    write_csv(t, path)
    back, _ = read_csv(path)
    assert back.equals(t)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_parquet_round_trip_is_exact(tmp_path_factory, shape):
    path = tmp_path_factory.mktemp("pq") / "ticks.parquet"
    t = random_ticks(*shape)
    write_parquet(t, path)
    back, _ = read_parquet(path)
    assert back.equals(t)


def test_csv_header_and_a_csv_written_by_pandas(tmp_path):
    t = random_ticks(5, 20, 3)
    write_csv(t, tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == ",".join(columns(3))
    to_frame(t).to_csv(tmp_path / "b.csv", index=False)  # NaN as an empty field
    assert read_csv(tmp_path / "b.csv")[0].equals(t)


def test_time_keeps_every_nanosecond(tmp_path):
    t = random_ticks(6, 3, 1)
    t = type(t)(**{**t.__dict__, "time": np.array([2**62 + 1, 2**62 + 2, 2**63 - 1])})
    write_csv(t, tmp_path / "t.csv")
    assert np.array_equal(read_csv(tmp_path / "t.csv")[0].time, t.time)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def good_csv(tmp_path, n=4):
    write_csv(random_ticks(7, n, 1), tmp_path / "good.csv")
    return (tmp_path / "good.csv").read_text().splitlines()


def test_malformed_value_names_file_line_and_column(tmp_path):
    lines = good_csv(tmp_path)
    fields = lines[3].split(",")
    fields[3] = "12x"  # bid_size_1, 4th column
    lines[3] = ",".join(fields)
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(TickDataError, match=r"bad\.csv, line 4, column 4 \('bid_size_1'\): "
                       r"malformed value '12x'") as info:  # fmt: skip
        read_csv(path)
    assert info.value.reason == "malformed"
    ticks, report = read_csv(path, on_error="drop")
    assert len(ticks) == 3 and report.dropped == {"malformed": 1} and report.rows_in == 4


def test_wrong_field_count_names_the_line(tmp_path):
    lines = good_csv(tmp_path)
    lines[2] += ",1"
    lines.insert(4, "")  # an empty line inside the data is malformed too
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(
        ValueError, match=r"bad\.csv, line 3: malformed row, expected 9 fields, found 10"
    ):
        read_csv(path)
    ticks, report = read_csv(path, on_error="drop")
    assert len(ticks) == 3 and report.dropped == {"malformed": 2}


def test_integer_out_of_range_is_malformed_not_wrapped(tmp_path):
    lines = good_csv(tmp_path)
    fields = lines[1].split(",")
    fields[1] = "257"  # would wrap to event 1 in int8
    lines[1] = ",".join(fields)
    fields = lines[2].split(",")
    fields[0] = "9223372036854775808"  # int64 max + 1
    lines[2] = ",".join(fields)
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(ValueError, match=r"line 2, column 2 \('event'\): malformed value '257'"):
        read_csv(path)
    assert read_csv(path, on_error="drop")[1].dropped == {"malformed": 2}


def test_validation_errors_from_csv_name_line_and_column(tmp_path):
    lines = good_csv(tmp_path)
    fields = lines[2].split(",")
    fields[5] = "-3"  # ask_size_1
    lines[2] = ",".join(fields)
    path = write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(ValueError, match=r"bad\.csv, line 3, column 6 \('ask_size_1'\): negative"):
        read_csv(path)


def test_frame_missing_column_and_bad_dtypes():
    frame = to_frame(random_ticks(8, 4, 2))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ask_size_2'\]"):
        from_frame(frame.drop(columns="ask_size_2"))
    with pytest.raises(ValueError, match=r"column 'time' has dtype float64, expected integers"):
        from_frame(frame.assign(time=frame.time.astype(float)))
    with pytest.raises(ValueError, match=r"column 'bid_size_1' has dtype \w+, expected numbers"):
        from_frame(frame.assign(bid_size_1="x"))


def test_frame_missing_code_is_a_malformed_row_and_datetime_time_is_accepted():
    t = random_ticks(9, 4, 1)
    frame = to_frame(t).assign(event=lambda f: f.event.astype(float))
    frame.loc[2, "event"] = np.nan
    with pytest.raises(ValueError, match=r"DataFrame row 2, column 'event': malformed value nan"):
        from_frame(frame)
    ticks, report = from_frame(frame, on_error="drop")
    assert ticks.equals(t[np.array([0, 1, 3])]) and report.dropped == {"malformed": 1}
    stamps = to_frame(t).assign(time=pd.to_datetime(t.time + 2**62, unit="ns"))
    assert np.array_equal(from_frame(stamps)[0].time, t.time + 2**62)


def test_parquet_null_time_is_malformed(tmp_path):
    frame = to_frame(random_ticks(10, 3, 1))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    time = pa.array([frame.time[0], None, frame.time[2]], pa.int64())
    pq.write_table(table.set_column(0, "time", time), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t\.parquet row 1, column 'time': malformed value"):
        read_parquet(tmp_path / "t.parquet")
    assert len(read_parquet(tmp_path / "t.parquet", on_error="drop")[0]) == 2


def test_read_ticks_tells_the_format_by_name(tmp_path):
    ticks = lobster_sample()
    write_parquet(ticks, tmp_path / "t.parquet")
    write_csv(ticks, tmp_path / "t.csv")
    message, _ = lobster_sample_paths()
    for path in (tmp_path / "t.parquet", tmp_path / "t.csv", message):
        assert read_ticks(path)[0].equals(ticks), path
    assert source_of("AMZN_message_1.csv") == "lobster" and source_of("x.csv") == "csv"
    with pytest.raises(ValueError, match="cannot tell the format of 'x.bin'"):
        read_ticks("x.bin")
    with pytest.raises(ValueError, match="no such tick file"):
        read_ticks(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="source must be one of"):
        read_ticks(tmp_path / "t.csv", "feather")

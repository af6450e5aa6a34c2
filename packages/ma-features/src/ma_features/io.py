"""Ticks to and from pandas DataFrames, CSV and Parquet, exactly.

One column per field, books spread over one column per level, levels numbered from 1:
``time, event, bid_price_1..K, bid_size_1..K, ask_price_1..K, ask_size_1..K, trade_price,
trade_size, trade_side``. Readers validate what they read (see :mod:`ma_features.validation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from . import _text
from .lobster import read_lobster
from .ticks import Ticks
from .validation import OnError, TickDataError, ValidationReport, Where, check

BOOK_FIELDS = ("bid_price", "bid_size", "ask_price", "ask_size")
_INT_FIELDS = {"time": np.int64, "event": np.int8, "trade_side": np.int8}


def columns(levels: int) -> list[str]:
    """Column names of ``levels`` levels, in the order written."""
    book = [f"{name}_{k}" for name in BOOK_FIELDS for k in range(1, levels + 1)]
    return ["time", "event", *book, "trade_price", "trade_size", "trade_side"]


def _levels(names: list[str], source: str) -> int:
    found = [int(m.group(1)) for n in names if (m := re.fullmatch(r"bid_price_(\d+)", str(n)))]
    levels = max(found, default=0)
    missing = [c for c in columns(levels) if c not in set(names)]
    if missing:
        raise TickDataError(f"{source}: missing column(s) {missing}", "malformed")
    return levels


def to_frame(ticks: Ticks) -> pd.DataFrame:
    """A DataFrame with the columns of :func:`columns` and a default index."""
    data = {"time": ticks.time, "event": ticks.event}
    for name in BOOK_FIELDS:
        book = getattr(ticks, name)
        data.update({f"{name}_{k + 1}": book[:, k] for k in range(ticks.levels)})
    data.update(
        trade_price=ticks.trade_price, trade_size=ticks.trade_size, trade_side=ticks.trade_side
    )
    return pd.DataFrame(data)


Parsed = dict[str, tuple[np.ndarray, np.ndarray]]  # column -> (values, ok)


def _assemble(
    parsed: Parsed,
    levels: int,
    on_error: OnError,
    source: str,
    where: Where,
    raw: Callable[[str, int], object],
    bad_lines: int = 0,
    first_bad_line: tuple[int, str] | None = None,
) -> tuple[Ticks, ValidationReport]:
    """Ticks from parsed columns; unparsable rows raise or are dropped, the rest is checked.

    ``first_bad_line`` is (position, message) of the first row a reader could not even split.
    """
    names = columns(levels)
    ok = np.logical_and.reduce([parsed[c][1] for c in names])
    if on_error == "raise" and not ok.all():
        i = int(np.argmax(~ok))
        if first_bad_line is None or first_bad_line[0] > i:
            column = next(c for c in names if not parsed[c][1][i])
            message = f"{where(i, column)}: malformed value {raw(column, i)!r}"
            raise TickDataError(message, "malformed")
    if on_error == "raise" and first_bad_line is not None:
        raise TickDataError(first_bad_line[1], "malformed")
    kept = np.flatnonzero(ok)
    values = {c: parsed[c][0][kept] for c in names}
    n = len(kept)
    book = {
        name: np.array([values[f"{name}_{k}"] for k in range(1, levels + 1)]).T.reshape(n, levels)
        for name in BOOK_FIELDS
    }
    ticks = Ticks(
        time=values["time"],
        event=values["event"],
        **{name: np.ascontiguousarray(array) for name, array in book.items()},
        trade_price=values["trade_price"],
        trade_size=values["trade_size"],
        trade_side=values["trade_side"],
    )
    malformed = bad_lines + len(ok) - len(kept)
    at = lambda r, c: where(int(kept[r]), c)  # noqa: E731
    return check(ticks, on_error, source=source, where=at, malformed=malformed)


def _frame_column(series: pd.Series, name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    dtype = _INT_FIELDS.get(name, np.float64)
    missing = series.isna().to_numpy()
    if name == "time" and pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series.to_numpy(dtype="datetime64[ns]").view(np.int64)
        return values, ~missing
    is_int = pd.api.types.is_integer_dtype(series.dtype)
    is_float = pd.api.types.is_float_dtype(series.dtype)
    # A float64 time would have lost nanoseconds already: refuse it rather than guess.
    if not (is_int or (is_float and name != "time")):
        kind = "integers" if name == "time" else "numbers"
        raise TickDataError(
            f"{source}: column '{name}' has dtype {series.dtype}, expected {kind}", "malformed"
        )
    if dtype is np.float64:  # a missing float is NaN: an empty level, or caught by validation
        return series.to_numpy(dtype=np.float64, na_value=np.nan), np.ones(len(series), bool)
    values = series.to_numpy(dtype=np.float64 if is_float else np.int64, na_value=0)
    info = np.iinfo(dtype)
    with np.errstate(invalid="ignore"):
        ok = ~missing & (values >= info.min) & (values <= info.max) & (values == np.round(values))
    return np.where(ok, values, 0).astype(dtype), ok


def from_frame(
    frame: pd.DataFrame, on_error: OnError = "raise", *, source: str = "DataFrame"
) -> tuple[Ticks, ValidationReport]:
    """Ticks from a DataFrame laid out as :func:`to_frame` writes (extra columns are ignored).

    ``time`` must be integer nanoseconds or datetime64; ``event`` and ``trade_side`` integral.
    Returns the ticks and the :class:`ValidationReport`; rows are named by position.
    """
    levels = _levels(list(frame.columns), source)
    parsed = {c: _frame_column(frame[c], c, source) for c in columns(levels)}
    return _assemble(
        parsed,
        levels,
        on_error,
        source,
        where=lambda r, c: f"{source} row {r}, column '{c}'",
        raw=lambda c, r: frame[c].tolist()[r],
    )


def write_csv(ticks: Ticks, path: str | Path) -> None:
    """CSV with a header line; floats in shortest round-trip form, NaN as an empty field."""
    table = pa.Table.from_pandas(to_frame(ticks), preserve_index=False)
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(table.column_names) + "\n").encode())  # arrow would quote names
        options = pcsv.WriteOptions(include_header=False, quoting_style="none")
        pcsv.write_csv(table, sink, write_options=options)


def read_csv(path: str | Path, on_error: OnError = "raise") -> tuple[Ticks, ValidationReport]:
    """Ticks from a CSV laid out as :func:`write_csv` writes; an empty field is NaN.

    Errors name the file, the line (1-based, the header is line 1) and the column.
    """
    table = _text.read_table(path, header=True)
    source = str(table.path)
    levels = _levels(table.header, source)
    index = {name: i for i, name in enumerate(table.header)}
    parsed: Parsed = {}
    for c in columns(levels):
        text = table.columns[index[c]]
        if c in _INT_FIELDS:
            parsed[c] = _text.parse_int(text, _INT_FIELDS[c])
        else:
            parsed[c] = _text.parse_float(text, empty_is_nan=True)
    first_bad = None
    if len(table.bad_lines):
        # Position among the parsed rows at which the unsplittable line would have been.
        position = int(np.searchsorted(table.lines, table.bad_lines[0]))
        first_bad = (position, table.bad_line_message(0))
    return _assemble(
        parsed,
        levels,
        on_error,
        source,
        where=lambda r, c: f"{source}, line {table.lines[r]}, column {index[c] + 1} ('{c}')",
        raw=lambda c, r: table.columns[index[c]][r].as_py(),
        bad_lines=len(table.bad_lines),
        first_bad_line=first_bad,
    )


def write_parquet(ticks: Ticks, path: str | Path) -> None:
    """Parquet with the columns of :func:`columns` (int64 time, int8 codes, float64 values)."""
    pq.write_table(pa.Table.from_pandas(to_frame(ticks), preserve_index=False), path)


def read_parquet(path: str | Path, on_error: OnError = "raise") -> tuple[Ticks, ValidationReport]:
    """Ticks from a Parquet file laid out as :func:`write_parquet` writes; rows are 0-based."""
    source = str(path)
    table = pq.read_table(path)
    # Nullable integers keep a null visible as missing instead of turning the column to float.
    nullable = {pa.int64(): pd.Int64Dtype(), pa.int8(): pd.Int8Dtype()}
    frame = table.to_pandas(types_mapper=nullable.get)
    return from_frame(frame, on_error, source=source)


SOURCES = ("lobster", "parquet", "csv")


def read_ticks(
    path: str | Path, source: str | None = None, on_error: OnError = "raise"
) -> tuple[Ticks, ValidationReport]:
    """Ticks from any file the readers take: ``source`` is ``"lobster"`` (a
    LOBSTER message file, its orderbook file beside it), ``"parquet"`` or
    ``"csv"`` (the layout of :func:`to_frame`); by default told by the name
    (``.parquet``; a ``message`` file; ``.csv``)."""
    path = Path(path)
    if source is None:
        source = source_of(path)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if not path.is_file():
        raise ValueError(f"{path}: no such tick file")
    if source == "lobster":
        return read_lobster(path, on_error=on_error)
    return (read_parquet if source == "parquet" else read_csv)(path, on_error)


def source_of(path: str | Path) -> str:
    """The reader a file name calls for, or a ValueError saying to name it."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return "parquet"
    if "message" in path.name:
        return "lobster"
    if path.suffix.lower() == ".csv":
        return "csv"
    raise ValueError(f"cannot tell the format of {str(path)!r}; name it ({', '.join(SOURCES)})")

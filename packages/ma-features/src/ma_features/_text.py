"""Comma-separated text split into string fields, and strict vectorised parsing of those fields.

Lines with the wrong number of fields are found with numpy on the raw bytes, the other lines
are split by pyarrow as strings, and each column is parsed by a regular expression check and
an arrow cast: no per-row Python, and every bad value is located by line and column.
Fields are never quoted (the formats here hold numbers only).
Plain files and columns have a shorter way: :func:`read_regular`, :func:`parse_plain_int`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

_INT = r"^[+-]?[0-9]{1,19}$"
_INT64_MAX = "9223372036854775807"
_FLOAT = r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|nan|inf|infinity)$"
_SECONDS = r"^[0-9]{1,12}(\.[0-9]{0,9})?$"
_SECONDS_PARTS = r"^(?P<s>[0-9]+)(?:\.(?P<f>[0-9]*))?$"


@dataclass(frozen=True)
class Table:
    """The fields of one file. Line numbers are 1-based, as an editor shows them."""

    path: Path
    header: list[str] | None
    columns: list[pa.Array]  # string fields of the well-formed lines
    lines: np.ndarray  # line number of each well-formed line
    bad_lines: np.ndarray  # lines with the wrong number of fields
    bad_counts: np.ndarray  # how many fields those lines have
    n_fields: int
    n_rows: int  # data lines, well-formed or not

    def bad_line_message(self, i: int) -> str:
        return (
            f"{self.path}, line {self.bad_lines[i]}: malformed row, "
            f"expected {self.n_fields} fields, found {self.bad_counts[i]}"
        )


BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte-order mark, as spreadsheets write it: skipped at the start of a file."""


def read_table(path: str | Path, n_fields: int | None = None, header: bool = False) -> Table:
    """Split ``path`` into fields; ``n_fields=None`` takes the count of the first data line.

    Trailing empty lines are ignored; an empty line elsewhere is a malformed row.
    """
    path = Path(path)
    data = path.read_bytes()
    raw = np.frombuffer(data[len(BOM) :] if data.startswith(BOM) else data, dtype=np.uint8)
    if (raw == 13).any():  # CRLF line ends
        raw = raw[raw != 13]
    ends = np.flatnonzero(raw == 10)
    if len(raw) and raw[-1] != 10:
        ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    nonempty = np.flatnonzero(ends > starts)
    n_lines = int(nonempty[-1]) + 1 if len(nonempty) else 0
    starts, ends = starts[:n_lines], ends[:n_lines]
    commas = np.flatnonzero(raw == 44)  # positions: 8 bytes a comma, not 8 bytes a byte
    counts = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1

    names = None
    first = 0
    if header:
        if n_lines == 0:
            raise ValueError(f"{path}: empty file, expected a header line")
        try:
            text = raw[starts[0] : ends[0]].tobytes().decode()
        except UnicodeDecodeError:
            raise _not_utf8(path, raw.tobytes()) from None
        names = [name.strip().strip('"') for name in text.split(",")]
        n_fields = len(names) if n_fields is None else n_fields
        first = 1
    if n_fields is None:
        n_fields = int(counts[first]) if n_lines > first else 0

    data = np.arange(first, n_lines)
    good = counts[data] == n_fields
    bad = data[~good]
    good_lines = data[good]
    # The bytes of the well-formed lines (and their line ends) go to pyarrow.
    if len(bad) == 0:
        body = raw[starts[first] : ends[-1]].tobytes() if len(data) else b""
    else:
        keep = np.zeros(n_lines, dtype=bool)
        keep[good_lines] = True
        keep_bytes = np.repeat(keep, ends - starts + 1)[: len(raw)]
        body = raw[: len(keep_bytes)][keep_bytes].tobytes()
    if body and not body.endswith(b"\n"):
        body += b"\n"

    column_names = [f"f{i}" for i in range(n_fields)]
    if body:
        try:
            table = pcsv.read_csv(
                io.BytesIO(body),
                read_options=pcsv.ReadOptions(column_names=column_names),
                parse_options=pcsv.ParseOptions(quote_char=False),
                convert_options=pcsv.ConvertOptions(
                    column_types={name: pa.string() for name in column_names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as e:
            if "UTF8" not in str(e):
                raise
            raise _not_utf8(path, raw.tobytes()) from None
        columns = [table.column(name).combine_chunks() for name in column_names]
    else:
        columns = [pa.array([], pa.string()) for _ in column_names]
    return Table(
        path=path,
        header=names,
        columns=columns,
        lines=good_lines + 1,
        bad_lines=bad + 1,
        bad_counts=counts[bad],
        n_fields=n_fields,
        n_rows=n_lines - first,
    )


def _not_utf8(path: Path, data: bytes) -> ValueError:
    """The error for a file that is not UTF-8 text, naming its first bad line."""
    try:
        data.decode()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return ValueError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                          "write it as UTF-8 or ASCII")
    return ValueError(f"{path}: not UTF-8 text; write it as UTF-8 or ASCII")


def read_regular(
    path: str | Path, charset: bytes, n_fields: int | None = None
) -> list[pa.Array] | None:
    """The string fields of ``path`` as :func:`read_table` splits them, when that is plain.

    Plain: the file is not empty, every byte is a comma, a line end or in ``charset``, and
    every line has ``n_fields`` fields, by default the first line's (so no empty line inside
    the data). Else None: :func:`read_table` is the reader that locates what is wrong. Costs
    a few passes over the bytes in C instead of :func:`read_table`'s numpy passes.
    """
    data = Path(path).read_bytes()
    if b"\r" in data:
        data = data.replace(b"\r", b"")  # as read_table: a CR is dropped wherever it is
    if data.translate(None, charset + b",\n"):
        return None
    end = len(data)
    while end and data[end - 1] == 10:  # trailing empty lines
        end -= 1
    if end == 0:
        return None
    if n_fields is None:
        first = data.find(b"\n", 0, end)
        n_fields = data.count(b",", 0, first if first >= 0 else end) + 1
    column_names = [f"f{i}" for i in range(n_fields)]
    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[:end]),
            read_options=pcsv.ReadOptions(column_names=column_names),
            # An empty line is a row of one field, refused like any other wrong count.
            parse_options=pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in column_names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    return [table.column(name).combine_chunks() for name in column_names]


def parse_plain_int(column: pa.Array) -> np.ndarray | None:
    """:func:`parse_int` of a column whose bytes are digits and ``-`` only, when every value
    is ok; else None.

    Over those bytes the arrow cast alone accepts exactly the strings of ``_INT`` in the int64
    range, once fields over 19 characters (``-`` and 19 digits, or leading zeros) are left
    out; it would also take hexadecimal and spaces, which the bytes exclude.
    """
    if len(column) and pc.max(pc.binary_length(column)).as_py() > 19:
        return None
    try:
        return pc.cast(column, pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        return None


def _matches(column: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(column, pattern, ignore_case=True).to_numpy(
        zero_copy_only=False
    )


def parse_int(column: pa.Array, dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """Integers in ``dtype``'s range: ``(values, ok)``, 0 where not ok."""
    ok = _matches(column, _INT)
    digits = pc.utf8_ltrim(column, "+-")
    too_long = pc.and_(
        pc.equal(pc.utf8_length(digits), 19), pc.greater(digits, _INT64_MAX)
    ).to_numpy(zero_copy_only=False)
    ok &= ~too_long
    # _INT admits a leading "+", which arrow's cast refuses: strip it first.
    text = pc.if_else(pa.array(ok), pc.utf8_ltrim(column, "+"), "0")
    values = pc.cast(text, pa.int64()).to_numpy().copy()
    info = np.iinfo(dtype)
    ok &= (values >= info.min) & (values <= info.max)
    values[~ok] = 0
    return values.astype(dtype), ok


def parse_float(column: pa.Array, empty_is_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decimal floats, also ``nan`` and ``inf``: ``(values, ok)``, exact (correctly rounded)."""
    ok = _matches(column, _FLOAT)
    if empty_is_nan:
        empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
        column = pc.if_else(pa.array(empty), "nan", column)
        ok |= empty
    values = pc.cast(pc.if_else(pa.array(ok), column, "0"), pa.float64()).to_numpy().copy()
    return values, ok


def parse_seconds(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Seconds with up to 9 decimals (``"34200.00426064"``) as exact int64 nanoseconds.

    The integer and fractional digits are parsed apart: a float64 holds only about 15
    significant digits, too few for nanoseconds after midnight.
    """
    ok = _matches(column, _SECONDS)
    parts = pc.extract_regex(pc.if_else(pa.array(ok), column, "0"), _SECONDS_PARTS)
    seconds = pc.cast(parts.field("s"), pa.int64()).to_numpy()
    nanos = pc.cast(pc.utf8_rpad(parts.field("f"), 9, "0"), pa.int64()).to_numpy()
    return seconds * 1_000_000_000 + nanos, ok

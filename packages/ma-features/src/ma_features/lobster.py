"""Reader of LOBSTER message and orderbook files (https://lobsterdata.com).

Message file, no header: ``time`` (seconds after midnight, up to 9 decimals), ``type`` (1-7,
:class:`~ma_features.EventType`), ``order_id``, ``size``, ``price`` (dollars x 10000),
``direction`` (1 buy, -1 sell limit order). Orderbook file, one row per message: ``ask price,
ask size, bid price, bid size`` for level 1, then level 2, ... (prices x 10000); an empty
level has the placeholder price -9999999999 (bid) or 9999999999 (ask) and size 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from . import _text
from .ticks import EventType, Ticks
from .validation import OnError, TickDataError, ValidationReport, check

MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
_PRICE_SCALE = 10_000
_EMPTY_BID, _EMPTY_ASK = -9_999_999_999, 9_999_999_999
_TRADE_EVENTS = (EventType.EXECUTE_VISIBLE, EventType.EXECUTE_HIDDEN)
# Where a Ticks column comes from: message column (1-based) and name.
_FROM_MESSAGE = {
    "time": (1, "time"),
    "event": (2, "type"),
    "trade_size": (4, "size"),
    "trade_price": (5, "price"),
    "trade_side": (6, "direction"),
}
_BOOK_OFFSET = {"ask_price": 1, "ask_size": 2, "bid_price": 3, "bid_size": 4}

_SAMPLE = (
    "AAPL_2012-06-21_34200000_57600000_message_10.csv",
    "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv",
)


def lobster_sample_paths() -> tuple[Path, Path]:
    """Message and orderbook files of the shipped sample: AAPL, 2012-06-21, 10 levels."""
    root = resources.files("ma_features") / "data" / "lobster"
    return tuple(Path(str(root / name)) for name in _SAMPLE)  # type: ignore[return-value]


def lobster_sample(**kwargs) -> Ticks:
    """The shipped sample as Ticks; ``kwargs`` go to :func:`read_lobster`."""
    return read_lobster(*lobster_sample_paths(), **kwargs)[0]


def read_lobster(
    message_file: str | Path,
    orderbook_file: str | Path | None = None,
    *,
    levels: int | None = None,
    events: Iterable[int] | None = None,
    on_error: OnError = "raise",
) -> tuple[Ticks, ValidationReport]:
    """Ticks from a LOBSTER message file and its orderbook file.

    Args:
        message_file: the ``..._message_K.csv`` file.
        orderbook_file: the ``..._orderbook_K.csv`` file; by default the message file's name
            with ``message`` replaced by ``orderbook``.
        levels: keep the first ``levels`` levels; by default all levels in the file.
        events: keep only events of these types (e.g. ``{1, 2, 3, 4, 5}``); by default all.
        on_error: ``"raise"`` or ``"drop"`` (see :mod:`ma_features.validation`); a row that is
            malformed in either file is dropped from both. Files of different lengths always
            raise: their rows cannot be paired.

    Time becomes int64 nanoseconds after midnight, parsed from the digits (no float rounding).
    Prices are dollars. Executions (types 4, 5) are trades: trade size and price from the
    message, aggressor side the opposite of the resting order's ``direction``. An auction
    cross (6) is a trade with side 0 (no aggressor). A halt (7) is kept as an event with no
    trade and the book as given; its price field (-1 halt, 0 quoting, 1 trading resumes) is
    not a price and is not kept: select halts with ``ticks.event == EventType.HALT``.
    """
    message_path = Path(message_file)
    if orderbook_file is None:
        if "message" not in message_path.name:
            raise ValueError(f"{message_path}: cannot infer the orderbook file, pass it")
        orderbook_file = message_path.with_name(message_path.name.replace("message", "orderbook"))
    orderbook_path = Path(orderbook_file)

    parsed = _read_fast(message_path, orderbook_path, levels)
    if parsed is None:
        parsed, ok, problems = _read_exact(message_path, orderbook_path, levels)
        if on_error == "raise" and problems:
            raise TickDataError(min(problems)[1], "malformed")
    else:
        ok = np.ones(len(parsed[0]), dtype=bool)
    time, kind, size, price, direction, raw_book = parsed
    keep = ok if events is None else ok & np.isin(kind, list(events))
    rows = np.flatnonzero(keep)
    ticks = _ticks(time, kind, size, price, direction, raw_book, rows)

    def where(row: int, column: str) -> str:
        line = rows[row] + 1
        if column in _FROM_MESSAGE:
            index, name = _FROM_MESSAGE[column]
            return f"{message_path}, line {line}, column {index} ('{name}')"
        field, level = column.rsplit("_", 1)
        index = 4 * (int(level) - 1) + _BOOK_OFFSET[field]
        return f"{orderbook_path}, line {line}, column {index} ('{_book_name(index - 1)}')"

    return check(ticks, on_error, source=str(message_path), where=where, malformed=int((~ok).sum()))


def _read_fast(message_path: Path, orderbook_path: Path, levels: int | None):
    """The columns of :func:`_read_exact` when both files are plain and every field is good;
    else None (and :func:`_read_exact` says what is wrong).

    The same parsers over the six message columns; the book's many columns are cast whole,
    which :func:`_text.parse_plain_int` shows equal to parsing them field by field.
    """
    messages = _text.read_regular(message_path, b"0123456789-.", len(MESSAGE_COLUMNS))
    book = _text.read_regular(orderbook_path, b"0123456789-")
    if messages is None or book is None or len(messages[0]) != len(book[0]) or len(book) % 4:
        return None
    levels = len(book) // 4 if levels is None else levels
    if not 1 <= levels <= len(book) // 4:
        return None
    time, good = _text.parse_seconds(messages[0])
    kind, kind_good = _text.parse_int(messages[1], np.int8)
    direction, direction_good = _text.parse_int(messages[5], np.int8)
    good &= kind_good & np.isin(kind, [int(e) for e in EventType])
    good &= direction_good & np.isin(direction, [-1, 1])
    (_, order_id_good), (size, size_good), (price, price_good) = (
        _text.parse_int(messages[j]) for j in (2, 3, 4)
    )
    good &= order_id_good & size_good & price_good
    if not good.all():
        return None
    raw_book = np.empty((len(time), 4 * levels), dtype=np.int64)
    for j in range(4 * levels):
        values = _text.parse_plain_int(book[j])
        if values is None:
            return None
        raw_book[:, j] = values
    return time, kind, size, price, direction, raw_book.reshape(-1, levels, 4)


def _read_exact(message_path: Path, orderbook_path: Path, levels: int | None):
    """Columns of both files, parsed field by field: ``(columns, ok, problems)``.

    Every unparsable field is located: ``problems`` holds (line, message) per bad column.
    """
    messages = _text.read_table(message_path, n_fields=len(MESSAGE_COLUMNS))
    book = _text.read_table(orderbook_path)
    if messages.n_rows != book.n_rows:
        raise ValueError(
            f"{message_path} has {messages.n_rows} rows but {orderbook_path} has "
            f"{book.n_rows}: a LOBSTER message file and its orderbook file pair row by row"
        )
    if book.n_rows == 0:
        raise ValueError(f"{message_path} and {orderbook_path} are empty: no ticks to read")
    if book.n_fields % 4:
        raise ValueError(f"{orderbook_path}, line 1: {book.n_fields} fields, expected 4 per level")
    file_levels = book.n_fields // 4
    levels = file_levels if levels is None else levels
    if not 1 <= levels <= file_levels:
        raise ValueError(f"levels={levels}, but {orderbook_path} has {file_levels} level(s)")

    n = messages.n_rows
    ok = np.ones(n, dtype=bool)
    # Per row: the first unparsable (line, file, column, value), to name it under "raise".
    problems: list[tuple[int, str]] = []

    def scatter(table: _text.Table, j: int, name: str, parsed: tuple) -> np.ndarray:
        """Values of column ``j`` on every row (0 where unparsable); marks bad rows."""
        values, good = parsed
        full = np.zeros(n, dtype=values.dtype)
        rows = table.lines - 1
        full[rows] = values
        ok[rows[~good]] = False
        if not good.all():
            i = int(np.argmax(~good))
            line, value = int(table.lines[i]), table.columns[j][i].as_py()
            where = f"{table.path}, line {line}, column {j + 1} ('{name}')"
            problems.append((line, f"{where}: malformed value {value!r}"))
        return full

    for table in (messages, book):
        ok[table.bad_lines - 1] = False
        if len(table.bad_lines):
            problems.append((int(table.bad_lines[0]), table.bad_line_message(0)))

    cols = messages.columns
    time = scatter(messages, 0, "time", _text.parse_seconds(cols[0]))
    kind, good = _text.parse_int(cols[1], np.int8)
    kind = scatter(messages, 1, "type", (kind, good & np.isin(kind, [int(e) for e in EventType])))
    scatter(messages, 2, "order_id", _text.parse_int(cols[2]))
    size = scatter(messages, 3, "size", _text.parse_int(cols[3]))
    price = scatter(messages, 4, "price", _text.parse_int(cols[4]))
    direction, good = _text.parse_int(cols[5], np.int8)
    direction = scatter(messages, 5, "direction", (direction, good & np.isin(direction, [-1, 1])))
    raw_book = np.stack(
        [
            scatter(book, j, _book_name(j), _text.parse_int(book.columns[j]))
            for j in range(4 * levels)
        ],
        axis=1,
    ).reshape(n, levels, 4)

    return (time, kind, size, price, direction, raw_book), ok, problems


def _book_name(j: int) -> str:
    """Name of 0-based orderbook column ``j``, e.g. ``bid price 3``."""
    field = ("ask price", "ask size", "bid price", "bid size")[j % 4]
    return f"{field} {j // 4 + 1}"


def _ticks(time, kind, size, price, direction, raw_book, rows) -> Ticks:
    book = raw_book[rows].astype(np.float64)
    ask_price, ask_size, bid_price, bid_size = (book[:, :, i] for i in range(4))
    ask_price[raw_book[rows, :, 0] == _EMPTY_ASK] = np.nan
    bid_price[raw_book[rows, :, 2] == _EMPTY_BID] = np.nan
    kind, size, price, direction = kind[rows], size[rows], price[rows], direction[rows]
    execution = np.isin(kind, [int(e) for e in _TRADE_EVENTS])
    trade = execution | (kind == EventType.CROSS)
    return Ticks(
        time=time[rows],
        event=kind.astype(np.int8),
        bid_price=bid_price / _PRICE_SCALE,
        bid_size=np.ascontiguousarray(bid_size),
        ask_price=ask_price / _PRICE_SCALE,
        ask_size=np.ascontiguousarray(ask_size),
        trade_price=np.where(trade, price / _PRICE_SCALE, 0.0),
        trade_size=np.where(trade, size, 0).astype(np.float64),
        # The message's direction is the resting order's side; the aggressor is the other.
        trade_side=np.where(execution, -direction, 0).astype(np.int8),
    )

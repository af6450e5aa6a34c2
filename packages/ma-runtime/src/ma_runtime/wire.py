"""The binary tick and result formats of the network feed (docs/feeds.md).

Both are fixed-size little-endian records, so a batch of them is one numpy
structured array: encoding and decoding are one ``tobytes`` / ``frombuffer``,
never a loop in Python.

A tick record (``tick_dtype(levels)``, 44 + 32 x levels bytes):

| field | type | meaning |
|---|---|---|
| ``magic`` | u16 | ``0x544D`` ("MT"), so a stream that is not ours is caught at once |
| ``version`` | u8 | 1 |
| ``levels`` | u8 | K, the book levels of the record |
| ``sequence`` | u64 | the sender's number of the tick, for loss and duplicate checks |
| ``instrument`` | u32 | the engine's instrument id |
| ``event`` | i8 | ``ma_features.EventType`` code |
| ``trade_side`` | i8 | +1, -1 or 0 |
| ``_pad`` | u16 | 0 |
| ``time`` | i64 | ns |
| ``trade_price``, ``trade_size`` | f64 | 0 when the event is no trade |
| ``bid_price``, ``bid_size``, ``ask_price``, ``ask_size`` | f64[K] | the book after the event |

A result record (``result_dtype(horizons)``, 24 + 12 x horizons bytes): the
tick's ``sequence`` (u64), ``status`` (u8: 0 a signal, else 1 + the index of
its reason in ``REJECTIONS``), 3 bytes of padding, ``instrument`` (u32),
the instrument's ``count`` of accepted ticks (u64, 0 for a rejection),
``probabilities`` (f32[H, 3]; 0 for a rejection).
"""

from __future__ import annotations

import numpy as np

import ma_features

MAGIC, VERSION = 0x544D, 1


def tick_dtype(levels: int) -> np.dtype:
    book = (np.float64, (levels,))
    return np.dtype([
        ("magic", "<u2"), ("version", "u1"), ("levels", "u1"), ("sequence", "<u8"),
        ("instrument", "<u4"), ("event", "i1"), ("trade_side", "i1"), ("_pad", "<u2"),
        ("time", "<i8"), ("trade_price", "<f8"), ("trade_size", "<f8"),
        ("bid_price", "<f8", book[1]), ("bid_size", "<f8", book[1]),
        ("ask_price", "<f8", book[1]), ("ask_size", "<f8", book[1]),
    ])


def result_dtype(horizons: int) -> np.dtype:
    return np.dtype([
        ("sequence", "<u8"), ("status", "u1"), ("_pad", "u1", (3,)), ("instrument", "<u4"),
        ("count", "<u8"), ("probabilities", "<f4", (horizons, 3)),
    ])


def encode_ticks(ticks: ma_features.Ticks, instruments: np.ndarray,
                 sequence: np.ndarray) -> bytes:
    """Ticks, their instruments and sequence numbers as tick records."""
    records = np.zeros(len(ticks), dtype=tick_dtype(ticks.levels))
    records["magic"], records["version"], records["levels"] = MAGIC, VERSION, ticks.levels
    records["sequence"], records["instrument"] = sequence, instruments
    for name in ("event", "trade_side", "time", "trade_price", "trade_size", "bid_price",
                 "bid_size", "ask_price", "ask_size"):
        records[name] = getattr(ticks, name)
    return records.tobytes()


def decode_ticks(data: bytes | memoryview,
                 levels: int) -> tuple[ma_features.Ticks, np.ndarray, np.ndarray]:
    """Whole tick records -> (Ticks, instruments, sequence numbers). A record
    that is not ours (magic, version or levels) is a ValueError naming it."""
    records = np.frombuffer(data, dtype=tick_dtype(levels))
    bad = np.flatnonzero((records["magic"] != MAGIC) | (records["version"] != VERSION)
                         | (records["levels"] != levels))
    if len(bad):
        r = records[bad[0]]
        raise ValueError(f"record {bad[0]} is not a version {VERSION} tick of {levels} levels "
                         f"(magic {int(r['magic']):#x}, version {int(r['version'])}, "
                         f"levels {int(r['levels'])})")
    ticks = ma_features.Ticks(**{name: np.array(records[name]) for name in (
        "time", "event", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
        "trade_size", "trade_side")})
    return ticks, records["instrument"].astype(np.int64), records["sequence"].copy()

"""A network feed on TCP: ``TickServer`` reads tick records (``wire``) from
its clients, pushes them through a ``StreamEngine`` and writes back one
result record per tick, in the order the ticks came; ``send_ticks`` is the
client. TCP keeps order and loses nothing, so every tick sent gets exactly
one result: a signal or a rejection with its reason (the load test checks
it, ``check_results``).
"""

from __future__ import annotations

import socket
import threading

import numpy as np

import ma_features

from .engine import REJECTIONS, Signals, StreamEngine
from .wire import decode_ticks, encode_ticks, result_dtype, tick_dtype

# A result's status: its index here (0 a signal, 1 + a rejection's index in REJECTIONS).
OUTCOMES = ("signal", *REJECTIONS)
_STATUS = {outcome: i for i, outcome in enumerate(OUTCOMES)}
_CHUNK = 1 << 20


class TickServer:
    """Serves ``engine`` on ``host:port`` (port 0: any free port, see
    ``address``), one connection at a time, in a background thread after
    ``start()``. Clients send tick records of the engine's levels."""

    def __init__(self, engine: StreamEngine, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        self._socket = socket.create_server((host, port))
        self.address = self._socket.getsockname()[:2]
        self._record = tick_dtype(engine.levels).itemsize
        self._results = result_dtype(engine.model.config.num_horizons)
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # what went wrong with a client, one line each

    def start(self) -> TickServer:
        self._thread = threading.Thread(target=self._serve, name="tick-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops accepting and waits for the connection being served to end."""
        try:  # shutdown, not only close: it wakes the thread blocked in accept()
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def __enter__(self) -> TickServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            with connection:
                try:
                    self._handle(connection)
                except (OSError, ValueError) as e:  # a client's fault: say so, serve the next
                    self.errors.append(f"{type(e).__name__}: {e}")

    def _handle(self, connection: socket.socket) -> None:
        pending = bytearray()
        while chunk := connection.recv(_CHUNK):
            pending += chunk
            whole = len(pending) // self._record * self._record
            if whole:
                ticks, instruments, sequence = decode_ticks(bytes(pending[:whole]),
                                                            self.engine.levels)
                del pending[:whole]
                signals = self.engine.push(ticks, instruments)
                connection.sendall(self._result_bytes(signals, instruments, sequence))
        if pending:
            raise ValueError(f"the client closed in the middle of a record ({len(pending)} of "
                             f"{self._record} bytes)")

    def _result_bytes(self, signals: Signals, instruments: np.ndarray,
                      sequence: np.ndarray) -> bytes:
        out = np.zeros(len(sequence), dtype=self._results)
        out["sequence"], out["instrument"] = sequence, instruments
        out["status"][signals.rejected_index] = [_STATUS[r] for r in signals.rejected_reason]
        out["count"][signals.index] = signals.sequence
        out["probabilities"][signals.index] = signals.probabilities.numpy()
        return out.tobytes()


def send_ticks(address: tuple[str, int], ticks: ma_features.Ticks, instruments: np.ndarray,
               horizons: int, *, levels: int | None = None, batch: int = 4096) -> np.ndarray:
    """Sends ``ticks`` (sequence numbers 0 .. n-1) as records of ``levels``
    book levels (the server's; default the ticks') and returns every result
    record the server sent back, until it closes. Results are read while
    ticks are still being sent (each side would otherwise wait on the other)."""
    dtype = result_dtype(horizons)
    if levels is not None and levels != ticks.levels:
        if levels > ticks.levels:
            raise ValueError(f"the ticks have {ticks.levels} levels, fewer than {levels}")
        book = ("bid_price", "bid_size", "ask_price", "ask_size")
        ticks = ma_features.Ticks(**{**vars(ticks),
                                     **{name: getattr(ticks, name)[:, :levels] for name in book}})
    received = bytearray()
    with socket.create_connection(address) as connection:
        reader = threading.Thread(target=_read_all, args=(connection, received), daemon=True)
        reader.start()
        for start in range(0, len(ticks), batch):
            rows = np.arange(start, min(start + batch, len(ticks)))
            connection.sendall(encode_ticks(ticks[rows], instruments[rows], rows))
        connection.shutdown(socket.SHUT_WR)  # the server sees EOF, answers the rest, closes
        reader.join()
    whole = len(received) // dtype.itemsize * dtype.itemsize
    return np.frombuffer(bytes(received[:whole]), dtype=dtype)


def _read_all(connection: socket.socket, into: bytearray) -> None:
    while chunk := connection.recv(_CHUNK):
        into += chunk


def check_results(results: np.ndarray, sent: int) -> dict[str, int]:
    """Raises AssertionError unless every tick 0 .. sent-1 has exactly one
    result (nothing lost, nothing duplicated); returns the count per outcome
    (``signal`` or a rejection reason)."""
    sequence = results["sequence"].astype(np.int64)
    counts = np.bincount(sequence[sequence < sent], minlength=sent)
    lost, doubled = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(lost) or len(doubled) or (sequence >= sent).any():
        raise AssertionError(f"{len(lost)} ticks without a result (first {lost[:5].tolist()}), "
                             f"{len(doubled)} with several (first {doubled[:5].tolist()}), "
                             f"{int((sequence >= sent).sum())} results of ticks never sent")
    outcome, number = np.unique(results["status"], return_counts=True)
    return {OUTCOMES[int(o)]: int(n) for o, n in zip(outcome, number, strict=True)}

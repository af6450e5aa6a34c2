import socket

import numpy as np
import pytest
from engines import HORIZONS, engine_for, ticks_of

import ma_features
from ma_runtime import REJECTIONS, TickServer, check_results, send_ticks
from ma_runtime.wire import decode_ticks, encode_ticks, result_dtype, tick_dtype


def test_wire_round_trip_and_sizes():
    ticks = ticks_of(50, 1, levels=3)
    ids, seq = np.arange(50) % 7, np.arange(100, 150)
    data = encode_ticks(ticks, ids, seq)
    assert len(data) == 50 * (44 + 32 * 3) == 50 * tick_dtype(3).itemsize
    back, back_ids, back_seq = decode_ticks(data, 3)
    assert back.equals(ticks) and (back_ids == ids).all() and (back_seq == seq).all()
    assert result_dtype(2).itemsize == 24 + 12 * 2
    with pytest.raises(ValueError, match="record 0 is not a version 1 tick of 2 levels"):
        decode_ticks(data[: tick_dtype(2).itemsize], 2)


def day(n: int, instruments: int, seed: int):
    """n ticks of `instruments` simulated books in time order, some of them bad."""
    streams = [ticks_of(n // instruments, seed + i) for i in range(instruments)]
    ticks = ma_features.Ticks.concat(streams)
    ids = np.repeat(np.arange(instruments), n // instruments)
    order = np.argsort(ticks.time, kind="stable")
    ticks, ids = ticks[order], ids[order]
    bid_size = ticks.bid_size.copy()
    bid_size[::97, 0] = -1.0  # every 97th tick: a negative size
    return ma_features.Ticks(**{**vars(ticks), "bid_size": bid_size}), ids


def test_every_tick_sent_gets_exactly_one_result():
    """A burst over loopback: each tick becomes a signal or a rejection with
    its reason, nothing lost, nothing duplicated, results in sending order."""
    engine = engine_for(instruments=8)
    ticks, ids = day(8000, 8, seed=3)
    with TickServer(engine) as server:
        results = send_ticks(server.address, ticks, ids, len(HORIZONS), levels=engine.levels,
                             batch=1000)
    counts = check_results(results, len(ticks))
    assert (results["sequence"] == np.arange(len(ticks))).all()
    assert counts == {"signal": engine.accepted, **engine.rejected}
    assert counts["bad_size"] == len(range(0, 8000, 97))
    signal = results[results["status"] == 0]
    np.testing.assert_allclose(signal["probabilities"].sum(-1), 1.0, rtol=1e-5)
    assert server.errors == []


def test_a_torn_record_is_reported_and_the_next_client_served():
    engine = engine_for(levels=2)
    ticks = ticks_of(10, 4)
    with TickServer(engine) as server:
        with socket.create_connection(server.address) as connection:
            connection.sendall(encode_ticks(ticks, np.zeros(10, np.int64), np.arange(10))[:-5])
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(1 << 16):
                pass
        results = send_ticks(server.address, ticks, np.zeros(10, np.int64), len(HORIZONS))
    assert len(server.errors) == 1 and "in the middle of a record" in server.errors[0]
    assert check_results(results, 10)["signal"] + sum(engine.rejected.values()) == 10


def test_check_results_finds_loss_and_duplicates():
    results = np.zeros(4, dtype=result_dtype(2))
    results["sequence"] = [0, 1, 1, 3]
    with pytest.raises(AssertionError, match="1 ticks without a result .first .2.., 1 with"):
        check_results(results, 4)
    results["sequence"] = [0, 1, 2, 3]
    results["status"] = [0, 0, 1 + list(REJECTIONS).index("overflow"), 0]
    assert check_results(results, 4) == {"signal": 3, "overflow": 1}

import numpy as np
import pytest
from engines import engine_for, ticks_of

import ma_features
from ma_runtime import replay


def two_sources():
    a, b = ticks_of(30, 1), ticks_of(20, 2)
    return a, ma_features.Ticks(**{**vars(b), "time": b.time + 3})  # interleaved, with ties


def test_merged_by_time_ties_keep_source_order():
    a, b = two_sources()
    batches = list(replay([a, b], batch=7))
    assert [len(t) for t, _ in batches] == [7] * 7 + [1]
    ticks = ma_features.Ticks.concat([t for t, _ in batches])
    ids = np.concatenate([i for _, i in batches])
    assert (np.diff(ticks.time) >= 0).all()
    assert (ids == 0).sum() == 30 and (ids == 1).sum() == 20
    for i, source in enumerate((a, b)):  # each source's own order, whole
        assert ticks[ids == i].equals(source)
    tied = np.flatnonzero(np.diff(ticks.time) == 0)
    assert all(ids[j] <= ids[j + 1] for j in tied if ids[j] != ids[j + 1])


def test_files_of_every_format(tmp_path):
    a, b = two_sources()
    ma_features.write_parquet(a, tmp_path / "a.parquet")
    ma_features.write_csv(b, tmp_path / "b.csv")
    from_files = list(replay([tmp_path / "a.parquet", tmp_path / "b.csv"]))
    from_ticks = list(replay([a, b]))
    assert len(from_files) == 50
    for (t1, i1), (t2, i2) in zip(from_files, from_ticks, strict=True):
        assert t1.equals(t2) and (i1 == i2).all()
    message, _ = ma_features.lobster_sample_paths()
    assert sum(len(t) for t, _ in replay([message], batch=100)) == 999


def test_paced_by_the_recorded_times():
    """At speed s a batch waits until (its time - the first time) / s of wall time."""
    ticks = ticks_of(5, 3)
    ticks = ma_features.Ticks(**{**vars(ticks), "time": np.array([0, 0, 1, 3, 4]) * 10**9})
    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    list(replay([ticks], speed=2.0, clock=lambda: now[0], sleep=sleep))
    assert slept == pytest.approx([0.5, 1.0, 0.5])  # due at 0, 0, 0.5, 1.5, 2.0 s
    assert now[0] == pytest.approx(2.0)


def test_replay_into_the_engine_loses_nothing():
    """Every replayed tick becomes a signal or a rejection with a reason."""
    a, b = two_sources()
    bad = ma_features.Ticks(**{**vars(a), "bid_size": np.where(np.arange(30)[:, None] == 4, -1.0,
                                                               a.bid_size)})
    engine = engine_for(instruments=2)
    seen = []
    for ticks, ids in replay([bad, b], batch=4):
        signals = engine.push(ticks, ids)
        seen += [(int(ids[i]), int(ticks.time[i])) for i in signals.index]
        seen += [(int(ids[i]), int(ticks.time[i])) for i in signals.rejected_index]
    assert len(seen) == 50
    assert engine.accepted == 49 and engine.rejected == {"bad_size": 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"batch": 0}, "batch must be an int >= 1"),
    ({"speed": 0}, "speed must be None or a positive number"),
    ({"speed": float("inf")}, "speed must be None or a positive number"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        next(replay([ticks_of(3, 1)], **kwargs))
    with pytest.raises(ValueError, match="at least one source"):
        next(replay([]))
    with pytest.raises(ValueError, match="different book levels"):
        next(replay([ticks_of(3, 1, levels=2), ticks_of(3, 2, levels=3)]))

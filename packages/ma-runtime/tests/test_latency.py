import time

import pytest
import torch

from ma_runtime import LatencyStats, measure_latency


def test_stats_from_known_samples():
    stats = LatencyStats.from_ns([i * 1000 for i in range(1, 101)])  # 1..100 us
    assert stats.count == 100
    assert stats.mean_us == pytest.approx(50.5)
    assert stats.p50_us == pytest.approx(50.5)
    assert stats.p99_us == pytest.approx(99.01)
    assert stats.max_us == 100.0
    assert "p99 99.0 us" in str(stats)


def test_measures_each_call_after_warmup():
    seen = []

    def step(i):
        seen.append(i)
        time.sleep(0.0002)

    stats = measure_latency(step, 20, warmup=3)
    assert seen == list(range(23)) and stats.count == 20  # each call its own index
    assert stats.p50_us >= 200


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_call_count(bad):
    with pytest.raises(ValueError, match="calls must be >= 1"):
        measure_latency(lambda i: None, bad)


def test_empty_samples():
    with pytest.raises(ValueError, match="at least one sample"):
        LatencyStats.from_ns(torch.empty(0))

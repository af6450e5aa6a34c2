import numpy as np
import pytest
import torch

import ma_kernels
from ma_features import LEVEL1_FEATURES, EventType, Ticks, level1_features, level1_features_frame


def random_ticks(n: int, levels: int = 3, seed: int = 0) -> Ticks:
    rng = np.random.default_rng(seed)
    mid = 100 + 0.01 * rng.integers(-1, 2, n).cumsum()
    offsets = 0.01 * np.arange(1, levels + 1)
    return Ticks(
        time=np.arange(n, dtype=np.int64) * 1000,
        event=np.full(n, EventType.SUBMIT, dtype=np.int8),
        bid_price=mid[:, None] - offsets,
        bid_size=rng.integers(1, 500, (n, levels)).astype(np.float64),
        ask_price=mid[:, None] + offsets,
        ask_size=rng.integers(1, 500, (n, levels)).astype(np.float64),
        trade_price=np.zeros(n),
        trade_size=np.zeros(n),
        trade_side=np.zeros(n, dtype=np.int8),
    )


def test_level1_features_match_the_reference():
    ticks = random_ticks(5000)
    ref = ma_kernels.reference.l1_features(ticks.level1(dtype=torch.float64))
    torch.testing.assert_close(level1_features(ticks, dtype=torch.float64), ref)
    assert level1_features(ticks).dtype == torch.float32


def test_frame_is_indexed_by_time_with_named_columns():
    ticks = random_ticks(100)
    frame = level1_features_frame(ticks)
    assert list(frame.columns) == list(LEVEL1_FEATURES)
    assert (frame.index.to_numpy() == ticks.time).all()
    assert frame["spread"].to_numpy() == pytest.approx(0.02)


@pytest.mark.gpu
def test_gpu_equals_cpu():
    ticks = random_ticks(10_000)
    torch.testing.assert_close(
        level1_features(ticks, device="cuda", dtype=torch.float64).cpu(),
        level1_features(ticks, dtype=torch.float64),
    )

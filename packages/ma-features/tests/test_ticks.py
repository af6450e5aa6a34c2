import numpy as np
import pytest
import torch
from ticks_factory import random_ticks

from ma_features import Ticks


def test_slice_and_mask_select_rows_of_every_field():
    t = random_ticks(0, 10, 3)
    part = t[2:5]
    assert len(part) == 3
    assert np.array_equal(part.time, t.time[2:5])
    assert np.array_equal(part.ask_size, t.ask_size[2:5])
    mask = t.trade_size > 0
    assert np.array_equal(t[mask].trade_price, t.trade_price[mask])
    assert t[np.array([9, 0])].equals(Ticks.concat([t[9:10], t[0:1]]))


def test_integer_index_is_refused():
    with pytest.raises(TypeError, match=r"ticks\[i:i \+ 1\]"):
        random_ticks(0, 3, 1)[1]


def test_concat_of_parts_is_the_whole():
    t = random_ticks(1, 12, 2)
    assert Ticks.concat([t[:5], t[5:7], t[7:]]).equals(t)


def test_concat_refuses_different_levels_and_nothing():
    with pytest.raises(ValueError, match=r"different numbers of levels \[1, 2\]"):
        Ticks.concat([random_ticks(0, 2, 1), random_ticks(0, 2, 2)])
    with pytest.raises(ValueError, match="at least one"):
        Ticks.concat([])


def test_equals_sees_nan_as_equal_and_any_change_or_dtype_as_different():
    t = random_ticks(2, 6, 2)
    assert np.isnan(t.bid_price).any() or np.isnan(t.ask_price).any()
    assert t.equals(t[:])
    changed = t.trade_size.copy()
    changed[3] += 1.0
    assert not t.equals(Ticks(**{**t.__dict__, "trade_size": changed}))
    assert not t.equals(Ticks(**{**t.__dict__, "event": t.event.astype(np.int64)}))


def test_to_tensors_keeps_values_and_integer_dtypes():
    t = random_ticks(3, 7, 2)[::2]  # a strided view, not contiguous
    out = t.to_tensors(dtype=torch.float64)
    assert out["time"].dtype == torch.int64 and out["event"].dtype == torch.int8
    assert out["trade_side"].dtype == torch.int8
    assert torch.equal(out["time"], torch.from_numpy(t.time.copy()))
    assert torch.equal(out["bid_price"].isnan(), torch.from_numpy(np.isnan(t.bid_price)))
    assert torch.allclose(out["ask_size"], torch.from_numpy(t.ask_size.copy()), rtol=0, atol=0)
    assert t.to_tensors()["bid_size"].dtype == torch.float32


@pytest.mark.gpu
def test_to_tensors_on_cuda():
    t = random_ticks(4, 5, 2)
    out = t.to_tensors("cuda", dtype=torch.float64)
    assert out["bid_size"].is_cuda and out["time"].is_cuda
    assert torch.equal(out["bid_size"].cpu(), torch.from_numpy(t.bid_size))

import numpy as np
import pytest
import torch
from test_transformer_step import CASES, problem

import ma_kernels
from ma_kernels import book_stream, resident


def resident_args(device: str, batch: int = 3):
    """A small model (the default model's sizes) over a 1-level feature state
    whose 7 columns are the model's inputs, standardised as they are."""
    args, options = problem(*CASES["default model"], device=device, seed=2)
    x, dt, active, params, keys, values, pos = args
    batch = len(pos)
    state = book_stream.stream_state(batch, 1, 1, device)
    spec = {"instant": ("spread", "mid_change", "microprice_offset", "imbalance", "ofi",
                        "log_depth", "inter_arrival"), "max_events": 1}
    inputs = params[0].shape[1]
    return dict(params=params, keys=keys, values=values, pos=pos.zero_(), state=state,
                spec=spec, x_index=torch.arange(inputs, device=device),
                shift=torch.zeros(inputs, dtype=torch.float64, device=device),
                scale=torch.ones(inputs, dtype=torch.float64, device=device), dt_column=6,
                dt_scale=1.0, limit=1e6, overflow_code=10, **options)


def test_refused_off_cuda():
    assert not resident.supported(32, 2, 2, 7, "cpu")
    with pytest.raises(ValueError, match="runs on CUDA"):
        ma_kernels.ResidentStream(**resident_args("cpu"))


def rounds(batch: int, n: int):
    """n rounds of one level-1 tick per instrument, every instrument active."""
    g = np.random.default_rng(0)
    for k in range(n):
        bid = 100 + g.integers(-3, 3, batch) * 0.01
        f64 = np.stack([bid, g.integers(1, 9, batch) * 100.0, bid + 0.01,
                        g.integers(1, 9, batch) * 100.0, np.zeros(batch), np.zeros(batch),
                        np.zeros(batch)], 1)
        i64 = np.stack([np.full(batch, 1000 * (k + 1)), np.ones(batch, np.int64),
                        np.ones(batch, np.int64)], 1)
        yield np.ascontiguousarray(f64), np.ascontiguousarray(i64)


@pytest.mark.gpu
def test_rounds_through_relaunches_and_close():
    args = resident_args("cuda")
    with ma_kernels.ResidentStream(**args, idle_timeout=0.05) as stream:
        sequences = []
        for k, (f64, i64) in enumerate(rounds(stream.batch, 6)):
            out, codes = stream.step(f64, i64)
            assert np.isfinite(out).all() and (codes[:, 0] == 0).all()
            sequences.append(codes[:, 1].copy())
            if k == 2:
                import time
                time.sleep(0.3)  # the kernel leaves; the next round relaunches it
            if k == 4:
                stream.close()  # and after a close too
        assert np.array_equal(np.stack(sequences), np.arange(1, 7)[:, None].repeat(3, 1))
    assert torch.equal(args["pos"].cpu(), torch.full((3,), 6))

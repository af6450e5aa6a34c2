import os

import numpy as np
import pytest
import torch
from test_transformer_step import CASES, problem

import ma_kernels
from ma_kernels import book_stream, reference, resident

# Under compute-sanitizer (racecheck) a round takes seconds: run.sh scales the
# host's wait by this factor there, so a slow round is not taken for a hang.
SLOWDOWN = float(os.environ.get("MA_SANITIZER_SLOWDOWN", "1"))

SPEC = {"instant": ("spread", "mid_change", "microprice_offset", "imbalance", "ofi", "log_depth",
                    "inter_arrival"), "max_events": 1}


def resident_args(device: str, case: str = "default model", fresh: bool = True):
    """A model of one of test_transformer_step's CASES over a 1-level feature
    state whose first columns are the model's inputs, standardised as they
    are (dt: the inter-arrival column). ``fresh``: positions at 0."""
    args, options = problem(*CASES[case], device=device, seed=2)
    x, dt, active, params, keys, values, pos = args
    state = book_stream.stream_state(len(pos), 1, 1, device)
    inputs = params[0].shape[1]
    return dict(params=params, keys=keys, values=values, pos=pos.zero_() if fresh else pos,
                state=state, spec=SPEC, x_index=torch.arange(inputs, device=device),
                shift=torch.zeros(inputs, dtype=torch.float64, device=device),
                scale=torch.ones(inputs, dtype=torch.float64, device=device), dt_column=6,
                dt_scale=1.0, limit=1e6, overflow_code=10, timeout=5.0 * SLOWDOWN, **options)


def test_refused_off_cuda():
    assert not resident.supported(32, 2, 2, 7, "cpu")
    with pytest.raises(ValueError, match="runs on CUDA"):
        ma_kernels.ResidentStream(**resident_args("cpu"))


def rounds(batch: int, n: int, active: float = 1.0, seed: int = 0):
    """n rounds of one level-1 tick per instrument, each instrument active
    with probability ``active``."""
    g = np.random.default_rng(seed)
    for k in range(n):
        bid = 100 + g.integers(-3, 3, batch) * 0.01
        f64 = np.stack([bid, g.integers(1, 9, batch) * 100.0, bid + 0.01,
                        g.integers(1, 9, batch) * 100.0, np.zeros(batch), np.zeros(batch),
                        np.zeros(batch)], 1)
        i64 = np.stack([np.full(batch, 1000 * (k + 1)), g.random(batch) < active,
                        np.ones(batch, np.int64)], 1).astype(np.int64)
        yield np.ascontiguousarray(f64), np.ascontiguousarray(i64)


def outputs(step_out: torch.Tensor, horizons: int) -> np.ndarray:
    """transformer_step's outputs (logits, regression) as the stream's:
    each horizon's logits through a softmax."""
    logits = step_out[:, : 3 * horizons].unflatten(1, (horizons, 3))
    return torch.cat([logits.softmax(-1).flatten(1), step_out[:, 3 * horizons :]], 1).numpy()


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["ANCHORS model", "default model",
                                  "rows over three tiles, head dim 8",
                                  "head dim 64, no regression"])
def test_rounds_match_float64_reference_with_bf16_weights(case):
    """Each round's outputs against the float64 reference step on the same
    inputs (the CPU op's) with the weight matrices rounded to bf16, as the
    kernel holds them: what is left is float32 arithmetic. Caches and
    positions from random, some far past the rings' wrap-around."""
    args = resident_args("cuda", case, fresh=False)
    options = {k: args[k] for k in ("heads", "window", "dilations")}
    standardise = {k: args[k].cpu() if isinstance(args[k], torch.Tensor) else args[k]
                   for k in ("x_index", "shift", "scale", "dt_column", "dt_scale", "limit",
                             "overflow_code")}
    params = [p.cpu().bfloat16().double() if p.dim() == 2 else p for p in args["params"]]
    horizons = CASES[case][8]
    state = book_stream.stream_state(len(args["pos"]), 1, 1, "cpu")
    want_state = ([k.cpu() for k in args["keys"]], [v.cpu() for v in args["values"]],
                  args["pos"].cpu())
    with ma_kernels.ResidentStream(**args) as stream:
        for f64, i64 in rounds(stream.batch, 12, active=0.7, seed=1):
            x, dt, accepted, code = ma_kernels.stream_inputs(
                torch.from_numpy(f64), torch.from_numpy(i64), state, **SPEC, **standardise)
            want, *want_state = reference.transformer_step(x, dt, accepted, params, *want_state,
                                                           **options)
            result = stream.step(f64, i64, np.full((stream.batch, stream.outputs + 2), np.nan))
            assert np.array_equal(result[:, -2], code.numpy())
            assert np.array_equal(result[:, -1], want_state[2].numpy())
            rows = accepted.numpy()
            if rows.any():
                error = np.linalg.norm(result[rows, :-2] - outputs(want[rows], horizons))
                assert error < 1e-4 * np.linalg.norm(result[rows, :-2]), f"off by {error:.2e}"
    for own, ref in zip([*args["keys"], *args["values"]], [*want_state[0], *want_state[1]],
                        strict=True):
        torch.testing.assert_close(own.cpu().double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_rounds_through_relaunches_and_close():
    args = resident_args("cuda")
    with ma_kernels.ResidentStream(**args, idle_timeout=0.05) as stream:
        sequences = []
        for k, (f64, i64) in enumerate(rounds(stream.batch, 6)):
            result = stream.step(f64, i64)
            assert np.isfinite(result).all() and (result[:, -2] == 0).all()
            sequences.append(result[:, -1].copy())
            if k == 2:
                import time
                time.sleep(0.3)  # the kernel leaves; the next round relaunches it
            if k == 4:
                stream.close()  # and after a close too
        assert np.array_equal(np.stack(sequences), np.arange(1, 7)[:, None].repeat(3, 1))
        with pytest.raises(ValueError, match="out must be a C-contiguous float64"):
            stream.step(f64, i64, np.zeros((3, stream.outputs + 2), np.float32))
    assert torch.equal(args["pos"].cpu(), torch.full((3,), 6))


@pytest.mark.gpu
def test_a_model_too_big_for_one_cluster_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="shared memory of one thread-block cluster"):
        ma_kernels.ResidentStream(**resident_args("cuda", "model dim 256"))


@pytest.mark.gpu
def test_stage_times_stamp_every_exchange_in_order():
    args = resident_args("cuda")  # 2 layers, 3 instruments: one tile
    with ma_kernels.ResidentStream(**args, trace=True) as stream:
        for f64, i64 in rounds(stream.batch, 3):
            stream.step(f64, i64)
        times = stream.stage_times()
    layers = len(args["dilations"])
    assert len(times) == 1 + 1 + 1 + 11 * layers + 1  # seen, featurised, embedded, layers, written
    assert times[0] == 0 and np.all(np.diff(times) >= 0) and times[-1] < 10**9

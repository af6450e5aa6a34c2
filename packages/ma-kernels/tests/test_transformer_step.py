import pytest
import torch
from conftest import DEVICES, check_graph_capture_and_side_stream

import ma_kernels
from ma_kernels import reference, step

# (batch, inputs, model_dim, heads, hidden, frequencies, dilations, window, horizons, regression)
CASES = {
    "ANCHORS model": (1, 6, 128, 4, 512, 8, (1, 1, 1, 1), 256, 1, 2),
    "default model": (3, 7, 32, 2, 128, 8, (1, 2), 32, 2, 2),
    "rows over three tiles, head dim 8": (19, 5, 64, 8, 96, 4, (1, 3, 2), 8, 3, 1),
    "head dim 64, no regression": (2, 4, 128, 2, 256, 2, (2,), 16, 1, 0),
    "model dim 256": (9, 6, 256, 8, 512, 8, (1, 4), 12, 1, 2),
}


@pytest.fixture
def poisoned(monkeypatch):
    """The op's output starts as NaN: an element the kernel fails to write shows."""
    monkeypatch.setattr(step, "_out", lambda x, params: torch.full(
        (x.shape[0], params[-4].shape[0] + params[-2].shape[0]), float("nan"),
        device=x.device))


def problem(batch, inputs, model_dim, heads, hidden, frequencies, dilations, window, horizons,
            regression, *, device="cpu", seed=0):
    """Random parameters of the named shapes, random caches (past ticks) and
    positions: some before the window fills, some far past the ring's wrap."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, offset=0.0):
        return (torch.randn(*shape, generator=g) * scale + offset).to(device)

    shapes = {"embed.weight": (model_dim, inputs), "time.freq": (frequencies,),
              "time.phase": (frequencies,), "time.proj.weight": (model_dim, 2 * frequencies + 1),
              "direction.weight": (3 * horizons, model_dim),
              "regression.weight": (regression, model_dim)}
    for i in range(len(dilations)):
        shapes.update({f"blocks.{i}.attn.qkv.weight": (3 * model_dim, model_dim),
                       f"blocks.{i}.attn.out.weight": (model_dim, model_dim),
                       f"blocks.{i}.mlp.up.weight": (2 * hidden, model_dim),
                       f"blocks.{i}.mlp.down.weight": (model_dim, hidden)})
    params = []
    for name in step.parameter_names(len(dilations)):
        if name in shapes:
            fan_in = shapes[name][-1] if len(shapes[name]) == 2 else 1
            params.append(rand(*shapes[name], scale=fan_in**-0.5))
        elif "norm" in name:
            params.append(rand(model_dim, scale=0.1, offset=1.0 if name.endswith("weight") else 0))
        else:  # a bias: the rows of its weight
            weight = params[-1]
            params.append(rand(weight.shape[0], scale=0.1))
    head_dim = model_dim // heads
    keys = [rand(batch, heads, window * d, head_dim) for d in dilations]
    values = [rand(batch, heads, window * d, head_dim) for d in dilations]
    pos = torch.randint(0, 3 * window * max(dilations), (batch,), generator=g)
    pos[::3] += 10**6  # far past the wrap-around
    active = torch.rand(batch, generator=g) < 0.7
    active[0] = True
    return (rand(batch, inputs), rand(batch).abs() * 3, active.to(device), params, keys, values,
            pos.to(device)), {"heads": heads, "window": window, "dilations": list(dilations)}


def check(args, options, tolerance=1e-4):
    x, dt, active, params, keys, values, pos = args
    want, want_keys, want_values, want_pos = reference.transformer_step(*args, **options)
    keys_before = [k.clone() for k in keys]
    out = ma_kernels.transformer_step(*args, **options)
    assert out.shape == want.shape and out.dtype == torch.float32
    rows = active.cpu()
    error = (out.cpu().double() - want)[rows].norm() / want[rows].norm()
    assert error < tolerance, f"output off by {error:.2e}"
    assert torch.equal(pos.cpu(), want_pos)
    for own, ref in zip([*keys, *values], [*want_keys, *want_values], strict=True):
        torch.testing.assert_close(own.cpu().double(), ref, rtol=1e-5, atol=1e-5)
    for own, before in zip(keys, keys_before, strict=True):  # inactive rows untouched
        assert torch.equal(own[~active], before[~active])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_reference(case, device, poisoned):
    args, options = problem(*CASES[case], device=device, seed=hash(case) % 1000)
    check(args, options)


@pytest.mark.parametrize("device", DEVICES)
def test_consecutive_steps_match_reference(device, poisoned):
    """Ticks fed one after another: each step reads what the last one wrote."""
    args, options = problem(4, 5, 64, 4, 128, 4, (1, 2), 6, 2, 1, device=device, seed=7)
    x, dt, active, params, keys, values, pos = args
    pos.zero_()  # a fresh stream: the window fills, then wraps
    state = ([k.cpu().double() for k in keys], [v.cpu().double() for v in values], pos.cpu())
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        x = torch.randn(x.shape, generator=g).to(device)
        active = (torch.rand(len(x), generator=g) < 0.8).to(device)
        want, *state = reference.transformer_step(x, dt, active, params, *state, **options)
        out = ma_kernels.transformer_step(x, dt, active, params, keys, values, pos, **options)
        rows = active.cpu()
        if rows.any():
            torch.testing.assert_close(out.cpu().double()[rows], want[rows], rtol=1e-4,
                                       atol=1e-4)
    assert torch.equal(pos.cpu(), state[2])


@pytest.mark.gpu
def test_cuda_agrees_with_cpu_and_captures_in_a_graph():
    args, options = problem(*CASES["default model"], device="cuda", seed=5)
    x, dt, active, params, keys, values, pos = args
    on_cpu = ma_kernels.transformer_step(x.cpu(), dt.cpu(), active.cpu(),
                                         [p.cpu() for p in params], [k.cpu() for k in keys],
                                         [v.cpu() for v in values], pos.cpu(), **options)
    on_gpu = ma_kernels.transformer_step(*args, **options)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)

    def op(x):  # inactive everywhere: replays leave the caches as they are
        return ma_kernels.transformer_step(x, dt, torch.zeros_like(active), params, keys,
                                           values, pos, **options)

    check_graph_capture_and_side_stream(op, lambda: torch.randn(x.shape, device="cuda"))


@pytest.mark.gpu
def test_rings_off_16_byte_boundaries_are_refused():
    """The kernel reads the rings as float4: an offset view must be refused, not misread."""
    args, options = problem(*CASES["default model"], device="cuda")
    x, dt, active, params, keys, values, pos = args
    shifted = torch.zeros(keys[0].numel() + 1, device="cuda")[1:].view(keys[0].shape)
    with pytest.raises(ValueError, match="16-byte boundaries"):
        ma_kernels.transformer_step(x, dt, active, params, [shifted, *keys[1:]], values, pos,
                                    **options)


def test_bad_arguments_are_named():
    args, options = problem(*CASES["default model"])
    x, dt, active, params, keys, values, pos = args
    cases = {
        "x must have shape": ((x[:, :3], dt, active, params, keys, values, pos), options),
        "active must have dtype torch.bool": ((x, dt, active.int(), params, keys, values, pos),
                                              options),
        "pos must have dtype torch.int64": ((x, dt, active, params, keys, values, pos.int()),
                                            options),
        r"keys\[1\] must have shape": ((x, dt, active, params, [keys[0], keys[0]], values, pos),
                                       options),
        "params must be the": ((x, dt, active, params[:-1], keys, values, pos), options),
        r"params\[embed.weight\] must have dtype torch.float32": (
            (x, dt, active, [params[0].double(), *params[1:]], keys, values, pos), options),
        "one dilation per layer|dilations must have": (
            (x, dt, active, params, keys, values, pos), {**options, "dilations": []}),
        "ints >= 1": ((x, dt, active, params, keys, values, pos), {**options, "window": 0}),
        "must be contiguous": ((x.t().contiguous().t(), dt, active, params, keys, values, pos),
                               options),
    }
    for message, (call, kwargs) in cases.items():
        with pytest.raises(ValueError, match=message):
            ma_kernels.transformer_step(*call, **kwargs)


def test_supports_names_the_cuda_family():
    assert step.supports(128, 4, 4, "cpu") and step.supports(128, 2, 4, "cpu")
    assert not step.supports(128, 4, 17, "cpu")
    assert not step.supports(128, 3, 4, "cpu")
    if ma_kernels.has_cuda():
        assert step.supports(128, 4, 4, "cuda") and not step.supports(256, 2, 4, "cuda")

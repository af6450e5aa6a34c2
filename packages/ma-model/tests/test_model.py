import pytest
import torch

import ma_kernels
from ma_model import MATransformer, ModelConfig


def _model(**overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"input_dim": 6, "model_dim": 16, "num_heads": 2, "num_layers": 3,
                         "window": 4, "dilations": (1, 2, 3), "time_frequencies": 4, **overrides})
    return MATransformer(cfg).double().eval()


def _inputs(batch=2, length=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 6, generator=g, dtype=torch.float64)
    dt = torch.rand(batch, length, generator=g, dtype=torch.float64) * 3
    return x, dt


def test_shapes():
    model = _model(num_horizons=3, num_regression=2)
    logits, reg = model(*_inputs(batch=3, length=12))
    assert logits.shape == (3, 12, 3, 3) and reg.shape == (3, 12, 2)


@pytest.mark.parametrize("dilations", [(1, 1, 1), (1, 2, 3)])
def test_step_equals_forward_past_the_ring_wrap_around(dilations):
    model = _model(dilations=dilations)
    x, dt = _inputs(length=40)  # capacities are 4 * d <= 12: every ring wraps several times
    with torch.no_grad():
        logits, reg = model(x, dt)
        cache = model.new_cache(2, dtype=torch.float64)
        for t in range(40):
            step_logits, step_reg = model.step(x[:, t], dt[:, t], cache)
            torch.testing.assert_close(step_logits, logits[:, t], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(step_reg, reg[:, t], rtol=1e-10, atol=1e-12)
        # forward on the prefix alone gives the same last position too
        prefix_logits, _ = model(x[:, :40], dt[:, :40])
        torch.testing.assert_close(step_logits, prefix_logits[:, -1], rtol=1e-10, atol=1e-12)
    assert cache.pos.tolist() == [40, 40]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instruments_tick_in_any_order(seed):
    """A random subset of sequences ticks at each step, each at its own
    position: every active output equals forward over that sequence's own
    ticks, past the rings' wrap-around; inactive sequences keep their caches."""
    model = _model(dilations=(1, 2, 3))
    instruments, steps = 3, 60
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(steps, instruments, generator=g) < 0.6
    x, dt = _inputs(batch=instruments, length=steps, seed=seed)
    cache = model.new_cache(instruments, dtype=torch.float64)
    streamed = [[] for _ in range(instruments)]
    with torch.no_grad():
        for t in range(steps):
            logits, _ = model.step(x[:, t], dt[:, t], cache, active[t])
            for i in active[t].nonzero()[:, 0].tolist():
                streamed[i].append(logits[i])
        for i in range(instruments):
            own = active[:, i]
            logits, _ = model(x[i : i + 1, own], dt[i : i + 1, own])
            torch.testing.assert_close(torch.stack(streamed[i]), logits[0], rtol=1e-10,
                                       atol=1e-12)
    assert cache.pos.tolist() == active.sum(0).tolist()


def test_future_inputs_do_not_change_past_outputs():
    model = _model()
    x, dt = _inputs(length=30)
    logits, reg = model(x, dt)
    x2, dt2 = x.clone(), dt.clone()
    x2[:, 20:] += 5.0
    dt2[:, 20:] *= 7.0
    logits2, reg2 = model(x2, dt2)
    torch.testing.assert_close(logits2[:, :20], logits[:, :20], rtol=0, atol=0)
    torch.testing.assert_close(reg2[:, :20], reg[:, :20], rtol=0, atol=0)
    assert not torch.allclose(logits2[:, 20:], logits[:, 20:])


@pytest.mark.parametrize("dilation", [1, 3])
def test_attention_sees_only_its_dilated_window(dilation):
    # One layer: output i depends on tick j < i only through attention to j.
    model = _model(num_layers=1, dilations=(dilation,))
    x, dt = _inputs(length=30)
    query = 25
    base, _ = model(x, dt)
    for j in range(query):
        changed = x.clone()
        changed[:, j] += 3.0
        out, _ = model(changed, dt)
        gap = query - j
        visible = gap < 4 * dilation and gap % dilation == 0
        assert torch.equal(out[:, query], base[:, query]) != visible, (j, visible)


def test_dense_attention_matches_a_window_wider_than_the_sequence():
    x, dt = _inputs(length=10)
    windowed = _model(num_layers=1, dilations=(1,), window=10)
    dense = _model(num_layers=1, dilations=(1,), window=10, attention="sdpa_dense")
    dense.load_state_dict(windowed.state_dict())
    torch.testing.assert_close(dense(x, dt)[0], windowed(x, dt)[0])
    with pytest.raises(ValueError, match="dense causal attention has no bounded cache"):
        dense.new_cache(2)


def test_bad_inputs_are_named():
    model = _model()
    x, dt = _inputs(length=8)
    with pytest.raises(ValueError, match="x must be"):
        model(x[..., :5], dt)
    with pytest.raises(ValueError, match="dt must have shape"):
        model(x, dt[:, :7])
    with pytest.raises(ValueError, match=r"x must be \[B, F\]"):
        model.step(x, dt, model.new_cache(2, dtype=torch.float64))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dilation", [1, 3])
def test_flex_attention_computes_the_same_window(dilation):
    windowed = _model(num_layers=1, dilations=(dilation,)).float()
    flex = _model(num_layers=1, dilations=(dilation,), attention="flex").float()
    flex.load_state_dict(windowed.state_dict())
    x, dt = (t.float() for t in _inputs(length=40))
    with torch.no_grad():  # FlexAttention has no CPU backward
        torch.testing.assert_close(flex(x, dt)[0], windowed(x, dt)[0], rtol=1e-5, atol=1e-6)


def test_forward_compiles_to_one_graph():
    # Two graphs double the per-step host work of compiled training (a replay
    # and an autograd node each) for nothing.
    model = _model()
    explained = torch._dynamo.explain(model)(*_inputs(length=6))
    assert explained.graph_count == 1


def test_step_traces_as_one_graph():
    # fullgraph=True fails on any graph break: .item(), a Python branch on data, a dynamic shape.
    model = _model()
    x, dt = _inputs(length=6)
    step = torch.compile(model.step, backend="eager", fullgraph=True)
    cache = model.new_cache(2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(6):
            logits, _ = step(x[:, t], dt[:, t], cache)
        torch.testing.assert_close(logits, model(x, dt)[0][:, -1], rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_gpu_forward_step_and_gradients_equal_the_cpu():
    cpu = _model(model_dim=64).float()  # head dim 32: the CUDA kernels take 32, 64, 128
    gpu = _model(model_dim=64).float().cuda()
    x, dt = (t.float() for t in _inputs(length=40))
    logits, reg = cpu(x, dt)
    gpu_logits, gpu_reg = gpu(x.cuda(), dt.cuda())
    torch.testing.assert_close(gpu_logits.cpu(), logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_reg.cpu(), reg, rtol=1e-4, atol=1e-5)
    (logits.square().sum() + reg.square().sum()).backward()
    (gpu_logits.square().sum() + gpu_reg.square().sum()).backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-5, msg=name)
    with torch.no_grad():  # the ring-buffer step on the GPU, past its wrap-around
        cache = gpu.new_cache(2, device="cuda")
        for t in range(40):
            step_logits, _ = gpu.step(x[:, t].cuda(), dt[:, t].cuda(), cache)
    torch.testing.assert_close(step_logits.cpu(), logits[:, -1].detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dilations", [(1, 1, 1), (1, 2, 3)])
def test_float32_step_is_the_fused_kernel_and_equals_forward(dilations, monkeypatch):
    """In float32 without gradients, step is ma_kernels.transformer_step; it
    equals the float64 forward at every position, past the rings' wrap-around,
    with sequences ticking in any order."""
    model = _model(dilations=dilations)
    fused = _model(dilations=dilations).float()
    calls = []
    kernel = ma_kernels.transformer_step
    monkeypatch.setattr(ma_kernels, "transformer_step",
                        lambda *a, **k: calls.append(1) or kernel(*a, **k))
    g = torch.Generator().manual_seed(0)
    active = torch.rand(40, 2, generator=g) < 0.7
    x, dt = _inputs(length=40)
    cache = fused.new_cache(2)
    streamed = [[], []]
    with torch.no_grad():
        for t in range(40):
            logits, _ = fused.step(x[:, t].float(), dt[:, t].float(), cache, active[t])
            for i in active[t].nonzero()[:, 0].tolist():
                streamed[i].append(logits[i])
        for i in range(2):
            want, _ = model(x[i : i + 1, active[:, i]], dt[i : i + 1, active[:, i]])
            torch.testing.assert_close(torch.stack(streamed[i]).double(), want[0], rtol=1e-4,
                                       atol=1e-5)
    assert len(calls) == 40

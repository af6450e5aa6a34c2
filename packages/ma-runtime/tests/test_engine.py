import pytest
import torch

import ma_features
import ma_model
from ma_runtime import StreamEngine

HORIZONS = [5, 20]


def small_config(model_dim: int = 16, heads: int = 2) -> ma_model.Config:
    return ma_model.config_from_dict(
        {
            "model": {
                "model_dim": model_dim,
                "num_heads": heads,
                "num_layers": 2,
                "window": 4,
                "dilations": [1, 2],
                "mlp_ratio": 2,
            },
            "data": {"horizons": HORIZONS},
        }
    )


def small_model(cfg: ma_model.Config) -> ma_model.MATransformer:
    torch.manual_seed(0)
    return ma_model.MATransformer(ma_model.model_config(cfg)).eval()


def fitted_inputs(cfg: ma_model.Config) -> ma_model.ModelInputs:
    train = torch.randn(500, len(cfg.data.features.names), dtype=torch.float64) * 3 + 1
    train[:, 2] = 7.0  # a feature constant in training maps to 0
    inputs = ma_model.ModelInputs.fit(cfg.data.features, train, torch.rand(500))
    inputs.dt_scale = 0.25
    return inputs


def batch_reference(model, inputs, x, dt):
    """What training-time code computes on the whole sequences at once."""
    z, scaled_dt = inputs.normalize(x.flatten(0, 1).cpu(), dt.flatten().cpu())
    with torch.no_grad():
        logits, regression = model(z.view_as(x).to(x.device), scaled_dt.view_as(dt).to(x.device))
    return logits.softmax(-1), regression


def stream(engine, x, dt):
    signals = [engine.step(x[:, t], dt[:, t]) for t in range(x.shape[1])]
    return (
        torch.stack([s.probabilities for s in signals], 1),
        torch.stack([s.regression for s in signals], 1),
    )


@pytest.mark.parametrize("instruments", [1, 3])
def test_stream_equals_batch_past_the_ring_wrap(instruments):
    cfg = small_config()
    model, norm = small_model(cfg), fitted_inputs(cfg)
    x = torch.randn(instruments, 40, model.config.input_dim)  # rings hold 4 and 8 ticks
    dt = torch.rand(instruments, 40)
    engine = StreamEngine(model, norm, instruments=instruments)
    probs, regression = stream(engine, x, dt)
    ref_probs, ref_regression = batch_reference(model, norm, x, dt)
    torch.testing.assert_close(probs, ref_probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(regression, ref_regression, rtol=1e-4, atol=1e-5)
    assert torch.allclose(probs.sum(-1), torch.ones(()))


def test_reset_starts_over():
    cfg = small_config()
    model = small_model(cfg)
    engine = StreamEngine(model, fitted_inputs(cfg))
    x, dt = torch.randn(1, 12, model.config.input_dim), torch.rand(1, 12)
    first = stream(engine, x, dt)[0]
    engine.reset()
    torch.testing.assert_close(stream(engine, x, dt)[0], first)


def test_from_checkpoint(tmp_path):
    cfg = small_config()
    model, norm = small_model(cfg), fitted_inputs(cfg)
    path = ma_model.save_checkpoint(
        tmp_path / "best.pt", model=model.state_dict(), config=cfg.to_dict(),
        normalization=norm.state_dict(),
    )
    engine = StreamEngine.from_checkpoint(path, device="cpu")
    x, dt = torch.randn(1, 10, model.config.input_dim), torch.rand(1, 10)
    torch.testing.assert_close(
        stream(engine, x, dt)[0], batch_reference(model, norm, x, dt)[0], rtol=1e-4, atol=1e-5
    )


def test_bad_ticks_are_refused():
    cfg = small_config()
    model = small_model(cfg)
    engine = StreamEngine(model, fitted_inputs(cfg), instruments=2)
    x, dt = torch.zeros(2, model.config.input_dim), torch.ones(2)
    bad = x.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite input at \(instrument, feature\) \[1, 3\]"):
        engine.step(bad, dt)
    with pytest.raises(ValueError, match="non-finite input"):
        engine.step(x, torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match=r"x must be \(2, 6\)"):
        engine.step(x[:1], dt[:1])
    with pytest.raises(ValueError, match="instruments must be >= 1"):
        StreamEngine(model, fitted_inputs(cfg), instruments=0)
    spread_only = ma_features.FeatureSpec(instant=("spread",), rolling=())
    other = ma_model.ModelInputs.fit(spread_only, torch.rand(10, 1), torch.rand(10))
    with pytest.raises(ValueError, match="the model reads 6 columns; the inputs' spec has 1"):
        StreamEngine(model, other)


@pytest.mark.gpu
@pytest.mark.parametrize("instruments", [1, 8])
def test_cuda_graph_stream_equals_batch(instruments):
    cfg = small_config(model_dim=64, heads=2)  # head dim 32 on CUDA
    model, norm = small_model(cfg).cuda(), fitted_inputs(cfg)
    x = torch.randn(instruments, 30, model.config.input_dim)
    dt = torch.rand(instruments, 30)
    engine = StreamEngine(model, norm, instruments=instruments, device="cuda")
    assert engine._graph is not None
    probs, regression = stream(engine, x, dt)
    ref_probs, ref_regression = batch_reference(model, norm, x.cuda(), dt.cuda())
    torch.testing.assert_close(probs, ref_probs.cpu(), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(regression, ref_regression.cpu(), rtol=1e-3, atol=1e-4)

from dataclasses import replace

import pytest
import torch

from ma_model import benchmark_steps


@pytest.mark.parametrize("attention", ["ma", "sdpa_dense"])
def test_benchmark_steps_runs_on_synthetic_data(tiny_config, attention):
    out = benchmark_steps(tiny_config, attention, steps=2, batch=2, length=32, device="cpu",
                          warmup=1)
    assert out["attention"] == attention and out["ticks_per_s"] > 0
    with pytest.raises(ValueError, match="attention must be one of"):
        benchmark_steps(tiny_config, "linear", device="cpu")


@pytest.mark.parametrize("attention", ["ma", "sdpa_dense"])
def test_compiled_training_follows_eager(tiny_config, attention):
    runs = [benchmark_steps(tiny_config, attention, steps=3, batch=2, length=32, device="cpu",
                            warmup=1, compile=compile) for compile in (False, True)]
    assert runs[1]["compile"] and not runs[0]["compile"]
    torch.testing.assert_close(runs[1]["losses"], runs[0]["losses"], rtol=1e-5, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["ma", "sdpa_dense", "flex"])
@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_training_follows_eager_on_the_gpu(tiny_config, attention, mode):
    # bf16 autocast: compiled kernels round differently, so the losses agree to bf16's precision.
    cfg = replace(tiny_config, model=replace(tiny_config.model, model_dim=64))  # head dim 32
    runs = [benchmark_steps(cfg, attention, steps=3, batch=2, length=256, device="cuda",
                            warmup=2, compile=compile) for compile in (False, mode)]
    torch.testing.assert_close(runs[1]["losses"], runs[0]["losses"], rtol=2e-2, atol=0)

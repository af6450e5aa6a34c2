from dataclasses import replace

import pytest
import torch

import ma_features
from ma_model import MATransformer, benchmark_steps, fit
from ma_model.fit import model_config
from ma_model.optim import adamw
from ma_model.step import EAGER_STEPS, TrainStep, label_weights, loss_terms, training_loss

INPUTS = len(ma_features.FeatureSpec.model_inputs().names)


def _batch(device="cpu", batch=4, length=16, horizons=2):
    return [torch.randn(batch, length, INPUTS), torch.rand(batch, length),
            torch.randint(0, 3, (batch, length, horizons)), torch.randn(batch, length, horizons),
            torch.ones(batch, length, horizons, dtype=torch.bool)]


def test_class_weights_weigh_each_label_by_its_horizon_and_class():
    logits = torch.randn(2, 5, 2, 3)
    labels = torch.randint(0, 3, (2, 5, 2))
    labels[0, 0, 1] = ma_features.IGNORE_INDEX
    reg, target, valid = torch.zeros(2, 5, 2), torch.zeros(2, 5, 2), torch.ones(2, 5, 2)
    weights = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, 4.0]])
    ce, _ = loss_terms(logits, reg, labels, target, valid, weights)
    expected = 0.0
    for b, t, h in torch.cartesian_prod(*(torch.arange(n) for n in labels.shape)).tolist():
        c = int(labels[b, t, h])
        if c != ma_features.IGNORE_INDEX:
            expected += float(weights[h, c] * -logits[b, t, h].log_softmax(-1)[c])
    assert float(ce) == pytest.approx(expected, rel=1e-5)
    plain, _ = loss_terms(logits, reg, labels, target, valid)
    assert float(plain) == pytest.approx(float(loss_terms(
        logits, reg, labels, target, valid, torch.ones(2, 3))[0]), rel=1e-6)
    per_label = label_weights(labels, weights)
    assert per_label[0, 0, 1] == 0 and per_label[1, 2, 0] == weights[0, labels[1, 2, 0]]


def _model(cfg, device="cpu"):
    torch.manual_seed(0)
    return MATransformer(model_config(cfg)).to(device)


def test_a_step_is_forward_backward_clipping_adamw_and_schedule(tiny_config):
    batches = [_batch() for _ in range(4)]
    model, reference = _model(tiny_config), _model(tiny_config)
    optimizer = adamw(model, tiny_config.train, torch.device("cpu"))
    step = TrainStep(model, optimizer,
                     torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s),
                     device=torch.device("cpu"), regression_weight=0.1, grad_clip=0.05)
    by_hand = adamw(reference, tiny_config.train, torch.device("cpu"))
    for i, batch in enumerate(batches):
        loss = step(batch)
        for group in by_hand.param_groups:
            group["lr"] = tiny_config.train.learning_rate * 0.5**i
        expected = training_loss(reference, batch, 0.1, autocast=False)
        by_hand.zero_grad()
        expected.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
        by_hand.step()
        assert not loss.requires_grad
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-6, atol=0)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_cuda_graph_needs_a_cuda_device(tiny_config):
    model = _model(tiny_config)
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device, got cpu"):
        TrainStep(model, adamw(model, tiny_config.train, torch.device("cpu")),
                  device=torch.device("cpu"), regression_weight=0.1, cuda_graph=True)


def test_cuda_graph_needs_a_capturable_optimizer_with_its_lr_on_the_device(tiny_config):
    # Checked before anything touches the GPU, so this runs without one too.
    model = _model(tiny_config)
    plain = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="capturable=True and each group's lr a tensor on cuda"):
        TrainStep(model, plain, device=torch.device("cuda"), regression_weight=0.1,
                  cuda_graph=True)


def test_cuda_graph_refuses_compile_modes_with_graphs_of_their_own(tiny_config):
    with pytest.raises(ValueError, match="train.compile cannot be 'reduce-overhead'"):
        replace(tiny_config.train, cuda_graph=True, compile="reduce-overhead")
    with pytest.raises(ValueError, match="cuda_graph\n  Input should be a valid boolean"):
        replace(tiny_config.train, cuda_graph="yes")
    model = _model(tiny_config)
    with pytest.raises(ValueError, match="compile mode 'max-autotune'"):
        TrainStep(model, torch.optim.AdamW(model.parameters()), device=torch.device("cuda"),
                  regression_weight=0.1, compile="max-autotune", cuda_graph=True)


def _gpu_config(tiny_config, **train):
    return replace(tiny_config, model=replace(tiny_config.model, model_dim=64),  # head dim 32
                   train=replace(tiny_config.train, device="cuda", **train))


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True])
def test_replayed_steps_follow_eager_steps(tiny_config, compile):
    # float32: the replay runs the eager steps' kernels, so the losses agree closely.
    cfg = _gpu_config(tiny_config)
    runs = [benchmark_steps(cfg, "ma", steps=4, batch=2, length=256, device="cuda",
                            warmup=EAGER_STEPS + 1, bf16=False, compile=compile,
                            cuda_graph=cuda_graph) for cuda_graph in (False, True)]
    assert runs[1]["cuda_graph"] and len(runs[1]["losses"]) == EAGER_STEPS + 5
    torch.testing.assert_close(runs[1]["losses"], runs[0]["losses"], rtol=1e-4, atol=0)


@pytest.mark.gpu
def test_the_replayed_step_reads_the_scheduled_learning_rate(tiny_config):
    cfg = _gpu_config(tiny_config, cuda_graph=True)
    device = torch.device("cuda")
    model = _model(cfg, device)
    optimizer = adamw(model, cfg.train, device)
    last_with_lr = EAGER_STEPS + 1  # the first step replayed after the capture's own
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: float(s <= last_with_lr))
    step = TrainStep(model, optimizer, scheduler, device=device, regression_weight=0.1,
                     grad_clip=1.0, cuda_graph=True)
    batch = _batch(length=64)
    snapshots = []
    for _ in range(last_with_lr + 3):
        step(batch)
        snapshots.append([p.detach().clone() for p in model.parameters()])
    assert step.graph is not None
    before, moved, *stopped = snapshots[last_with_lr - 1:]
    assert any(not torch.equal(a, b) for a, b in zip(before, moved, strict=True))
    for later in stopped:  # lr 0 from here: the replays must see it
        assert all(torch.equal(a, b) for a, b in zip(moved, later, strict=True))
    with pytest.raises(ValueError, match="shaped like the one it captured"):
        step(_batch(length=32))


@pytest.mark.gpu
def test_fit_with_cuda_graph_follows_eager_and_resumes_exactly(tiny_config, tmp_path):
    def run(name, cuda_graph, **kwargs):
        cfg = _gpu_config(tiny_config, cuda_graph=cuda_graph, out_dir=str(tmp_path / name))
        return fit(cfg, log=lambda *_: None, **kwargs)["history"]

    eager, graphed = run("eager", False), run("graphed", True)
    assert len(graphed["step_loss"]) > 2 * EAGER_STEPS
    torch.testing.assert_close(graphed["step_loss"], eager["step_loss"], rtol=1e-3, atol=0)
    torch.testing.assert_close(graphed["lr"], eager["lr"], rtol=1e-6, atol=0)
    run("parted", True, stop_after_epochs=1)
    resumed = run("parted", True, resume=True)
    torch.testing.assert_close(resumed["step_loss"], graphed["step_loss"], rtol=1e-5, atol=0)

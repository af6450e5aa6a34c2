from dataclasses import replace

import pytest
import torch

import ma_features
from ma_model import MATransformer, fit, load_checkpoint, save_checkpoint
from ma_model.fit import BEST, LAST, model_config, train_epoch
from ma_model.optim import adamw
from ma_model.step import EAGER_STEPS, TrainStep


def test_short_run_reduces_the_loss(tiny_config):
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=3))
    result = fit(cfg, log=lambda *_: None)
    steps = result["history"]["step_loss"]
    assert result["epochs_done"] == 3
    assert sum(steps[-5:]) / 5 < 0.9 * sum(steps[:5]) / 5
    assert result["history"]["val_loss"][-1] < result["history"]["val_loss"][0]


def test_checkpoint_round_trip_rebuilds_the_model(tiny_config):
    fit(tiny_config, log=lambda *_: None)
    out = tiny_config.train.out_dir
    best, last = load_checkpoint(f"{out}/{BEST}"), load_checkpoint(f"{out}/{LAST}")
    assert best["config"] == tiny_config.to_dict() and best["versions"]["ma-model"]
    assert {"optimizer", "scheduler", "rng", "epoch", "step"} <= set(last)
    assert "optimizer" not in best and last["epoch"] == 2
    model = MATransformer(model_config(tiny_config))
    model.load_state_dict(last["model"])
    x, dt = torch.randn(1, 16, 6), torch.rand(1, 16)
    again = MATransformer(model_config(tiny_config))
    again.load_state_dict(load_checkpoint(f"{out}/{LAST}")["model"])
    assert torch.equal(model(x, dt)[0], again(x, dt)[0])


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_config, tmp_path):
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=3))
    whole = fit(replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "whole"))),
                log=lambda *_: None)
    parted_cfg = replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "parted")))
    first = fit(parted_cfg, stop_after_epochs=1, log=lambda *_: None)
    assert first["epochs_done"] == 1 and not first["finished"]
    second = fit(parted_cfg, resume=True, log=lambda *_: None)
    assert second["history"] == whole["history"]
    a = load_checkpoint(tmp_path / "whole" / LAST)["model"]
    b = load_checkpoint(tmp_path / "parted" / LAST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_takes_a_checkpoint_written_before_a_config_key_existed(tiny_config):
    fit(tiny_config, stop_after_epochs=1, log=lambda *_: None)
    path = f"{tiny_config.train.out_dir}/{LAST}"
    old = load_checkpoint(path)
    del old["config"]["train"]["cuda_graph"]  # a key added later, at its default
    save_checkpoint(path, **{k: v for k, v in old.items() if k != "versions"})
    assert fit(tiny_config, resume=True, log=lambda *_: None)["epochs_done"] == 2


def test_resume_with_another_config_is_refused(tiny_config):
    fit(tiny_config, stop_after_epochs=1, log=lambda *_: None)
    other = replace(tiny_config, train=replace(tiny_config.train, learning_rate=0.1))
    with pytest.raises(ValueError, match="different config"):
        fit(other, resume=True)


def test_early_stopping_on_validation_loss(tiny_config):
    # A learning rate this high makes the validation loss worse after the first epoch.
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=8, patience=1,
                                             learning_rate=3.0, warmup_steps=1))
    result = fit(cfg, log=lambda *_: None)
    assert result["stopped_early"] and result["epochs_done"] < 8
    val = result["history"]["val_loss"]
    assert min(val[:-1]) <= val[-1]


def test_fit_with_compile_follows_eager(tiny_config, tmp_path):
    runs = [fit(replace(tiny_config, train=replace(tiny_config.train, epochs=1, compile=compile,
                                                   out_dir=str(tmp_path / str(compile)))),
                log=lambda *_: None)["history"] for compile in (False, True)]
    torch.testing.assert_close(runs[1]["step_loss"], runs[0]["step_loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(runs[1]["val_loss"], runs[0]["val_loss"], rtol=1e-5, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_an_epoch_on_the_gpu_never_waits_for_it(tiny_config, cuda_graph):
    # The host issues step i + 1 while the GPU runs step i only if no step
    # reads a result back (a loss printed, a tensor tested on the host).
    cfg = replace(tiny_config, model=replace(tiny_config.model, model_dim=64),  # head dim 32
                  train=replace(tiny_config.train, cuda_graph=cuda_graph))
    device = torch.device("cuda")
    model = MATransformer(model_config(cfg)).to(device)
    optimizer = adamw(model, cfg.train, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    step = TrainStep(model, optimizer, scheduler, device=device, regression_weight=0.1,
                     grad_clip=1.0, cuda_graph=cuda_graph)
    inputs = len(ma_features.FeatureSpec.model_inputs().names)
    batches = [[torch.randn(4, 64, inputs), torch.rand(4, 64),
                torch.randint(0, 3, (4, 64, 2)), torch.randn(4, 64, 2),
                torch.ones(4, 64, 2, dtype=torch.bool)] for _ in range(EAGER_STEPS + 2)]
    batches = [[t.pin_memory() for t in batch] for batch in batches]
    train_epoch(step, batches)  # first calls set up (and capture)
    torch.cuda.set_sync_debug_mode("error")  # raises at any synchronising call
    try:
        losses = train_epoch(step, batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert losses.shape == (len(batches),) and losses.device.type == "cuda"
    assert torch.isfinite(losses).all()
    assert (step.graph is not None) == cuda_graph


def test_compile_takes_a_bool_or_a_mode(tiny_config):
    assert replace(tiny_config.train, compile="reduce-overhead").compile == "reduce-overhead"
    with pytest.raises(ValueError, match="compile\n  Input should be False, True, .default."):
        replace(tiny_config.train, compile="yes")


def test_input_dim_must_match_the_features(tiny_config):
    cfg = replace(tiny_config, model=replace(tiny_config.model, input_dim=5))
    with pytest.raises(ValueError, match="input_dim.*is 5 but data.features has 6 columns"):
        fit(cfg)


def test_max_minutes_stops_fit_after_the_step_that_spends_it(tiny_config):
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=5, max_minutes=1e-6))
    lines = []
    result = fit(cfg, log=lines.append)
    assert result["budget_spent"] and result["finished"] and result["epochs_done"] == 1
    assert len(result["history"]["step_loss"]) == 1  # one step, then the budget is gone
    assert load_checkpoint(result["best"])["step"] == 1
    assert any("train.max_minutes" in line for line in lines)
    whole = fit(replace(cfg, train=replace(cfg.train, max_minutes=None, epochs=1,
                                           out_dir=cfg.train.out_dir + "-whole")),
                log=lambda *_: None)
    assert not whole["budget_spent"] and len(whole["history"]["step_loss"]) > 1


def test_fit_without_a_validation_split_keeps_the_last_epoch(tiny_config):
    cfg = replace(tiny_config, data=replace(tiny_config.data, val_fraction=0),
                  train=replace(tiny_config.train, epochs=2))
    result = fit(cfg, log=lambda *_: None)
    assert result["epochs_done"] == 2 and result["history"]["val_loss"] == []
    best, last = load_checkpoint(result["best"]), load_checkpoint(f"{cfg.train.out_dir}/{LAST}")
    assert best["epoch"] == 2 and all(torch.equal(best["model"][k], last["model"][k])
                                      for k in best["model"])


def test_balanced_class_weights_change_the_loss_and_validate_on_its_scale(tiny_config):
    from ma_model import load_splits
    from ma_model.data import WindowDataset, balanced_class_weights
    from ma_model.fit import class_weights, validate

    splits = load_splits(tiny_config.data)
    assert class_weights(tiny_config.train, splits) is None
    cfg = replace(tiny_config, train=replace(tiny_config.train, class_weight="balanced"))
    weights = class_weights(cfg.train, splits)
    assert torch.equal(weights, balanced_class_weights(splits.train.labels))
    torch.manual_seed(0)
    model = MATransformer(model_config(cfg))
    val = WindowDataset(splits.val, 16, 16)
    cpu = torch.device("cpu")
    plain = validate(model, val, cfg, cpu, 0, 1)
    weighted = validate(model, val, cfg, cpu, 0, 1, weights)
    assert weighted["accuracy"] == plain["accuracy"]  # weights move the loss, not the counts
    assert weighted["cross_entropy"] != pytest.approx(plain["cross_entropy"], rel=1e-4)
    # With equal weights the weighted mean is the plain one.
    ones = validate(model, val, cfg, cpu, 0, 1, torch.full((2, 3), 2.0))
    assert ones["cross_entropy"] == pytest.approx(plain["cross_entropy"], rel=1e-5)
    unweighted = fit(tiny_config, log=lambda *_: None)["history"]["train_loss"]
    cfg = replace(cfg, train=replace(cfg.train, out_dir=tiny_config.train.out_dir + "-w"))
    balanced = fit(cfg, log=lambda *_: None)["history"]["train_loss"]
    assert balanced != unweighted


def test_mirror_and_recency_change_training_and_resume_exactly(tiny_config, tmp_path):
    plain = fit(tiny_config, log=lambda *_: None)["history"]["train_loss"]
    for train in ({"mirror": 0.5}, {"recency": 4.0}):
        cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=3, **train))
        whole = fit(replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "whole"))),
                    log=lambda *_: None)
        assert whole["history"]["train_loss"][:2] != plain
        parted = replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "parted")))
        fit(parted, stop_after_epochs=1, log=lambda *_: None)
        assert fit(parted, resume=True, log=lambda *_: None)["history"] == whole["history"]

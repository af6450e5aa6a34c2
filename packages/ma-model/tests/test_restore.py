from dataclasses import replace

import pytest
import torch

from ma_model import (
    CheckpointError,
    MATransformer,
    evaluate_checkpoint,
    fit,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


def test_load_model_gives_the_trained_weights_and_inputs(trained):
    model, inputs = load_model(trained)
    saved = load_checkpoint(trained)
    assert isinstance(model, MATransformer) and not model.training
    for name, w in model.state_dict().items():
        assert torch.equal(w, saved["model"][name])
    assert inputs.state_dict()["dt_scale"] == saved["normalization"]["dt_scale"]


@pytest.fixture
def trained(tiny_config):
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=1))
    return fit(cfg, log=lambda *_: None)["best"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("config"), "no 'config' entry"),
    (lambda c: c.pop("normalization"), "no 'normalization' entry"),
    (lambda c: c.pop("model"), "no 'model' entry"),
    (lambda c: c["model"].update({"embed.weight": torch.zeros(3, 3)}), "weights do not fit"),
    (lambda c: c["model"]["embed.weight"].fill_(float("nan")), r"\['embed.weight'\] hold NaN"),
    (lambda c: c["normalization"]["standardizer"].update(mean=torch.zeros(2), std=torch.ones(2)),
     "normalization does not fit its features"),
    (lambda c: c["config"]["model"].update(window=0),
     "model.window: Input should be greater than or equal to 1"),
])
def test_broken_checkpoint_is_named_not_a_traceback(trained, tmp_path, change, message):
    ckpt = load_checkpoint(trained)
    change(ckpt)
    path = save_checkpoint(tmp_path / "broken.pt", **{k: v for k, v in ckpt.items()
                                                      if k not in ("format", "format_version",
                                                                   "versions")})
    for load in (load_model, evaluate_checkpoint):
        with pytest.raises(CheckpointError, match=message):
            load(path)

import pytest
import torch

from ma_model import MATransformer, load_splits, logistic_regression, model_config
from ma_model.scoring import network_predictor, report, scored_rows, segment_f1


def test_every_model_is_scored_on_the_same_rows(tiny_config):
    splits = load_splits(tiny_config.data)
    predict = logistic_regression(splits.train, steps=20)
    pred, labels = scored_rows(splits.test, 16, predict)
    n = len(splits.test.x)
    windows = (n - 16) // 8 + 1
    assert pred.shape == labels.shape == (windows * 8, 2)
    # labels are those of rows 8 .. of the split, in order
    assert torch.equal(labels[:8], splits.test.labels[8:16])


def test_report_is_one_classification_report_per_horizon():
    labels = torch.tensor([[0, 2], [1, 2], [2, 0]])
    pred = torch.tensor([[0, 2], [1, 1], [2, 0]])
    first, second = report(pred, labels)
    assert first["accuracy"] == 1 and second["accuracy"] == pytest.approx(2 / 3)
    assert second["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_network_predictor_is_the_models_logits_in_eval_mode(tiny_config):
    model = MATransformer(model_config(tiny_config)).train()
    x, dt = torch.randn(2, 16, model.config.input_dim), torch.rand(2, 16)
    predict = network_predictor(model, torch.device("cpu"))
    assert not model.training
    assert torch.equal(predict(x, dt), model(x, dt)[0])


def test_segment_f1_scores_consecutive_runs_of_rows():
    labels = torch.tensor([[0], [1], [2], [0], [1], [2]])
    pred = torch.tensor([[0], [1], [2], [1], [1], [1]])  # right, then only "stationary"
    first, second = segment_f1(pred, labels, 2)
    assert first == [pytest.approx(1.0)] and second == [pytest.approx(1 / 6)]  # F1 0, 0.5, 0
    with pytest.raises(ValueError, match="--segments must be between 1 and the 6"):
        segment_f1(pred, labels, 7)

import pytest
import torch

from ma_model import MATransformer, load_splits, logistic_regression, model_config
from ma_model.scoring import ensemble, network_predictor, report, scored_rows, segment_f1


def test_every_model_is_scored_on_the_same_rows(tiny_config):
    splits = load_splits(tiny_config.data)
    predict = logistic_regression(splits.train, steps=20)
    probabilities, labels = scored_rows(splits.test, 16, predict)
    n = len(splits.test.x)
    windows = (n - 16) // 8 + 1
    assert labels.shape == (windows * 8, 2) and probabilities.shape == (windows * 8, 2, 3)
    # labels are those of rows 8 .. of the split, in order
    assert torch.equal(labels[:8], splits.test.labels[8:16])


def _probabilities(pred: torch.Tensor) -> torch.Tensor:
    """Class indices -> probabilities [..., 3] whose argmax they are."""
    return 0.2 + 0.4 * torch.nn.functional.one_hot(pred, 3)


def test_report_is_one_classification_report_per_horizon():
    labels = torch.tensor([[0, 2], [1, 2], [2, 0]])
    pred = torch.tensor([[0, 2], [1, 1], [2, 0]])
    first, second = report(_probabilities(pred), labels)
    assert first["accuracy"] == 1 and second["accuracy"] == pytest.approx(2 / 3)
    assert second["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_network_predictor_is_the_softmax_of_the_logits_in_eval_mode(tiny_config):
    model = MATransformer(model_config(tiny_config)).train()
    x, dt = torch.randn(2, 16, model.config.input_dim), torch.rand(2, 16)
    predict = network_predictor(model, torch.device("cpu"))
    assert not model.training
    assert torch.equal(predict(x, dt), model(x, dt)[0].softmax(-1))


def test_ensemble_reports_the_mean_probabilities_of_the_runs():
    labels = torch.tensor([[0], [1], [2], [2]])
    # Each run gets one row wrong; their mean gets every row right.
    first = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.1, 0.5, 0.4]])
    second = torch.tensor([[0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.0, 0.2, 0.8]])
    first, second = first[:, None], second[:, None]  # [rows, 1 horizon, 3]
    assert report(first, labels)[0]["accuracy"] == report(second, labels)[0]["accuracy"] == 0.75
    (mean,) = ensemble([(first, labels), (second, labels)])
    assert mean["accuracy"] == 1.0
    with pytest.raises(ValueError, match="the runs score different rows"):
        ensemble([(first, labels), (second, labels.flip(0))])


def test_segment_f1_scores_consecutive_runs_of_rows():
    labels = torch.tensor([[0], [1], [2], [0], [1], [2]])
    pred = torch.tensor([[0], [1], [2], [1], [1], [1]])  # right, then only "stationary"
    first, second = segment_f1(_probabilities(pred), labels, 2)
    assert first == [pytest.approx(1.0)] and second == [pytest.approx(1 / 6)]  # F1 0, 0.5, 0
    with pytest.raises(ValueError, match="--segments must be between 1 and the 6"):
        segment_f1(_probabilities(pred), labels, 7)

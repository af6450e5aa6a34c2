import time

import numpy as np
import pytest
import torch

import ma_features
from ma_model.baselines import fit_gbt, fit_logistic, fit_majority, tabular_inputs, time_holdout
from ma_model.data import TickArrays

IGNORE = ma_features.IGNORE_INDEX


def _arrays(n=3000, seed=0):
    """Labels a per-tick rule decides: horizon 0 by the sign of column 0,
    horizon 1 by the sign of column 1; the last rows undefined."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    dt = torch.rand(n, generator=g)
    labels = torch.stack([torch.where(x[:, 0] > 0.5, 2, torch.where(x[:, 0] < -0.5, 0, 1)),
                          torch.where(x[:, 1] > 0, 2, 0)], dim=1)
    labels[-10:] = IGNORE
    zeros = torch.zeros(n, 2)
    return TickArrays(x, dt, labels, zeros, zeros.bool())


def _accuracy(predict, arrays):
    probabilities = predict(arrays.x[None], arrays.dt[None])[0]  # [N, H, 3]
    assert probabilities.shape == (len(arrays.x), 2, 3)
    assert bool((probabilities >= 0).all())
    assert torch.allclose(probabilities.sum(-1), torch.ones(len(arrays.x), 2), atol=1e-5)
    defined = arrays.labels != IGNORE
    return ((probabilities.argmax(-1) == arrays.labels) & defined).sum(0) / defined.sum(0)


def test_tabular_inputs_append_log1p_dt():
    x, dt = torch.ones(2, 4, 3), torch.full((2, 4), np.e - 1)
    out = tabular_inputs(x, dt)
    assert out.shape == (2, 4, 4) and torch.allclose(out[..., 3], torch.ones(2, 4))


def test_majority_predicts_the_most_frequent_training_class():
    train = _arrays()
    scores = fit_majority(train)(train.x[None, :5], train.dt[None, :5])
    assert scores.shape == (1, 5, 2, 3)
    for h in range(2):
        y = train.labels[:, h][train.labels[:, h] != IGNORE]
        assert bool((scores[0, :, h].argmax(-1) == torch.bincount(y).argmax()).all())


@pytest.mark.parametrize("fit", [fit_logistic, fit_gbt])
def test_learned_baselines_find_a_per_tick_rule(fit):
    train, test = _arrays(seed=0), _arrays(seed=1)
    acc = _accuracy(fit(train), test)
    assert bool((acc > 0.9).all()), acc  # the majority class alone is below 0.75
    majority = _accuracy(fit_majority(train), test)
    assert bool((majority < 0.75).all())


def test_gbt_stops_adding_trees_at_the_deadline():
    train = _arrays(n=20000)
    start = time.monotonic()
    fit_gbt(train, deadline=start, max_iter=300, chunk=5)
    one_chunk = time.monotonic() - start
    start = time.monotonic()
    predict = fit_gbt(train, deadline=None, max_iter=300, chunk=5)
    assert time.monotonic() - start > one_chunk  # without a deadline it grows further
    assert predict(train.x[None, :3], train.dt[None, :3]).shape == (1, 3, 2, 3)


def test_logistic_deadline_stops_after_one_round():
    train = _arrays()
    stopped = fit_logistic(train, steps=300, deadline=time.monotonic())
    full = fit_logistic(train, steps=300)
    assert bool((_accuracy(stopped, train) <= _accuracy(full, train) + 1e-6).all())


def test_a_horizon_without_labels_is_named():
    train = _arrays()
    train.labels[:, 1] = IGNORE
    with pytest.raises(ValueError, match="no defined label at horizon index 1"):
        fit_gbt(train)


def test_gbt_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sklearn.ensemble", None)
    with pytest.raises(ValueError, match=r"pip install 'ma-model\[baselines\]'"):
        fit_gbt(_arrays(n=100))


def test_time_holdout_is_the_last_rows_after_a_gap():
    fit_rows, held = time_holdout(1000, 0.1, gap=20)
    assert (fit_rows, held) == (slice(0, 880), slice(900, 1000))
    with pytest.raises(ValueError, match="leave none to fit"):
        time_holdout(30, 0.1, gap=29)


def test_gbt_early_stops_on_the_last_rows_by_time(monkeypatch):
    from sklearn.ensemble import HistGradientBoostingClassifier

    calls = []
    real_fit = HistGradientBoostingClassifier.fit

    def spy(self, x, y, **kwargs):
        calls.append((len(x), kwargs["X_val"], kwargs["y_val"]))
        return real_fit(self, x, y, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", spy)
    train = _arrays()
    fit_gbt(train, gap=5, max_iter=25)
    defined = train.labels[:, 0] != IGNORE
    x = tabular_inputs(train.x, train.dt)[defined].double().numpy()
    n = int(defined.sum())
    fitted, x_val, y_val = calls[0]
    assert fitted == n - n // 10 - 5
    assert np.array_equal(x_val, x[n - n // 10:])  # the latest rows, not a random draw
    assert np.array_equal(y_val, train.labels[defined, 0][n - n // 10:].numpy())


@pytest.mark.parametrize("fit", [fit_logistic, fit_gbt])
def test_class_weights_move_the_learned_baselines_toward_a_rare_class(fit):
    train, test = _arrays(seed=0), _arrays(seed=1)
    # 60% of horizon 0's labels turned to class 1 make the moves (0 and 2) the rare classes.
    g = torch.Generator().manual_seed(2)
    flip = (torch.rand(len(train.x), generator=g) < 0.6) & (train.labels[:, 0] != IGNORE)
    train.labels[flip, 0] = 1
    heavy = torch.tensor([[5.0, 1.0, 5.0], [1.0, 1.0, 1.0]])

    def rare_share(predict):
        pred = predict(test.x[None], test.dt[None])[0, :, 0].argmax(-1)
        return float((pred != 1).float().mean())

    assert rare_share(fit(train, class_weights=heavy)) > rare_share(fit(train)) + 0.1

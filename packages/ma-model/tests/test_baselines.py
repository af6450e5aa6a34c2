import time

import numpy as np
import pytest
import torch

import ma_features
from ma_model.baselines import (
    TabularMirror,
    fit_gbt,
    fit_logistic,
    fit_majority,
    tabular_inputs,
    time_holdout,
)
from ma_model.data import TickArrays, mirror_rows

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


def _mirror(fraction, seed=0):
    """The mirror of :func:`_arrays`' tabular rows: columns 0 and 1 odd (with
    an offset on column 0, as a train-standardised odd column has), column
    2 and log1p(dt) even."""
    return TabularMirror(fraction, torch.tensor([-1.0, -1.0, 1.0, 1.0]),
                         torch.tensor([0.25, 0.0, 0.0, 0.0]), seed)


def test_tabular_mirror_adds_the_mirrors_of_a_fraction_of_the_rows():
    train = _arrays(n=400)
    rows, labels = tabular_inputs(train.x, train.dt), train.labels
    out, out_labels = _mirror(0.25).extend(rows, labels)
    assert out.shape == (500, 4) and out_labels.shape == (500, 2)
    assert torch.equal(out[:400], rows) and torch.equal(out_labels[:400], labels)
    sign, offset = _mirror(0.25).sign, _mirror(0.25).offset
    drawn = [int(((rows * sign + offset - row).abs().sum(1) < 1e-6).nonzero()) for row in out[400:]]
    assert len(set(drawn)) == 100  # a hundred distinct rows, each mirrored once
    swap = torch.tensor([2, 1, 0])
    for row, label in zip(drawn, out_labels[400:], strict=True):
        defined = labels[row] != IGNORE
        assert torch.equal(label[defined], swap[labels[row][defined]])  # down and up swapped
        assert bool((label[~defined] == IGNORE).all())
    again, _ = _mirror(0.25).extend(rows, labels)
    other, _ = _mirror(0.25, seed=1).extend(rows, labels)
    assert torch.equal(again, out) and not torch.equal(other, out)  # drawn with the seed
    both, one = _mirror(1.0).extend(rows, labels[:, 0])  # one horizon's labels
    first = labels[:, 0]
    assert both.shape == (800, 4)
    assert torch.equal(one[400:], torch.where(first == IGNORE, IGNORE, 2 - first))


def test_tabular_mirror_of_the_inputs_keeps_log1p_dt():
    from ma_model.inputs import ModelInputs

    spec = ma_features.FeatureSpec(instant=("spread", "ofi", "imbalance"), rolling=())
    g = torch.Generator().manual_seed(0)
    inputs = ModelInputs.fit(spec, torch.randn(100, 3, generator=g) + 1, torch.rand(100))
    assert TabularMirror.of(0.0, inputs) is None
    mirror = TabularMirror.of(0.25, inputs, seed=3)
    sign, offset = inputs.mirror()
    assert (mirror.fraction, mirror.seed) == (0.25, 3)
    assert torch.equal(mirror.sign, torch.cat([sign, torch.ones(1)]))
    assert torch.equal(mirror.offset, torch.cat([offset, torch.zeros(1)]))
    assert mirror.sign.tolist() == [1, -1, -1, 1] and bool((mirror.offset[1:3] != 0).all())


@pytest.mark.parametrize("fit", [fit_logistic, fit_gbt])
def test_learned_baselines_fit_the_mirrored_rows(fit):
    """A training split that only rises (columns 0 and 1 positive, each
    horizon up where its column passes 0.5): only the mirrored rows, labelled
    down where the originals went up, teach a baseline the falls."""
    def rising(seed):
        arrays = _arrays(seed=seed)
        x = torch.cat([arrays.x[:, :2].abs(), arrays.x[:, 2:]], dim=1)
        labels = torch.where(x[:, :2] > 0.5, 2, 1)
        return TickArrays(x, arrays.dt, labels, arrays.target, arrays.target_valid)

    train, test = rising(0), rising(1)
    mirror = TabularMirror(1.0, _mirror(1.0).sign, torch.zeros(4))
    x, labels = mirror_rows(test.x, test.labels, mirror.sign[:3], mirror.offset[:3])
    falls = TickArrays(x, test.dt, labels, test.target, test.target_valid)
    assert bool((_accuracy(fit(train), falls) < 0.75).all())  # never says down
    assert bool((_accuracy(fit(train, mirror=mirror), falls) > 0.9).all())
    assert bool((_accuracy(fit(train, mirror=mirror), test) > 0.9).all())

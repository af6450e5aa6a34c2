import pytest
import torch

import ma_features
from ma_model.decision import GRID, apply_offsets, fit_offsets, validation_rule
from ma_model.scoring import report


def _clean(rows: int, horizons: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [rows, H, 3] and the labels that are their argmax."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(rows, horizons, 3, generator=g, dtype=torch.float64)
    log_p = logits.log_softmax(-1)
    return log_p, log_p.argmax(-1)


def test_recovers_a_known_shift():
    # A model biased towards stationary (down and up log-probabilities 0.7 and 0.4 too low):
    # adding 0.7 and 0.4 back makes every row right again, and nothing else on the grid does.
    log_p, labels = _clean(5_000, horizons=2)
    shift = torch.tensor([[-0.7, 0.0, -0.4], [0.3, 0.0, -1.1]], dtype=torch.float64)
    biased = log_p + shift
    assert report(biased.exp(), labels)[0]["macro_f1"] < 0.97
    offsets = fit_offsets(biased, labels)
    assert offsets == pytest.approx(-shift, abs=1e-9)
    for r in report(apply_offsets(biased.exp(), offsets), labels):
        assert r["macro_f1"] == pytest.approx(1.0)


def test_no_offsets_where_argmax_is_already_optimal():
    # Well separated classes: argmax is right on every row, and so are small offsets;
    # the tie goes to the smallest offsets, none.
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 1, 1])[:, None]
    log_p = torch.nn.functional.one_hot(labels, 3).double().mul(0.98).add(0.01).log()
    offsets = fit_offsets(log_p, labels)
    assert torch.equal(offsets, torch.zeros(1, 3, dtype=torch.float64))
    assert torch.equal(apply_offsets(log_p.exp(), offsets).argmax(-1), labels)


def test_offsets_are_on_the_grid_stationary_is_zero_and_ignored_rows_do_not_count():
    log_p, labels = _clean(2_000, seed=1)
    biased = log_p + torch.tensor([0.0, 0.9, 0.0], dtype=torch.float64)
    ignored = labels.clone()
    ignored[::2] = ma_features.IGNORE_INDEX
    offsets = fit_offsets(biased, ignored)
    assert offsets[0, 1] == 0
    assert all(((GRID - o).abs() < 1e-12).any() for o in offsets[0, [0, 2]])
    assert torch.equal(offsets, fit_offsets(biased[1::2], labels[1::2]))
    assert torch.equal(offsets, fit_offsets(biased, ignored))  # deterministic


def test_the_rule_never_reads_the_scored_rows_labels():
    # validation_rule gets the scored split's probabilities only: its offsets come from the
    # validation rows, whatever the test labels, and the test probabilities' order is kept.
    val_log_p, val_labels = _clean(3_000, horizons=2, seed=2)
    shift = torch.tensor([-0.5, 0.0, -0.5], dtype=torch.float64)
    val = ((val_log_p + shift).exp(), val_labels)
    test_log_p, _ = _clean(500, horizons=2, seed=3)
    test = (test_log_p + shift).exp()
    moved, offsets = validation_rule(val, test)
    assert torch.equal(offsets, fit_offsets(val[0].log(), val_labels))
    assert torch.equal(moved, apply_offsets(test, offsets))
    assert torch.equal(moved[:100], validation_rule(val, test[:100])[0])


def test_apply_offsets_renormalises_and_keeps_the_dtype():
    p = torch.tensor([[[0.3, 0.4, 0.3]]])
    moved = apply_offsets(p, torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64))
    assert moved.dtype == p.dtype and moved.sum() == pytest.approx(1.0)
    assert moved.argmax(-1).item() == 0


def test_fit_offsets_checks_shapes():
    with pytest.raises(ValueError, match="do not match"):
        fit_offsets(torch.zeros(4, 2, 3), torch.zeros(4, 1, dtype=torch.long))

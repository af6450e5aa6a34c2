import pytest
import torch

from ma_model import classification_report, confusion_matrix


def test_confusion_matrix_skips_ignored_labels():
    true = torch.tensor([0, 0, 1, 2, 2, -1])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(true, pred).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="pred has classes outside"):
        confusion_matrix(true, torch.tensor([0, 1, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(true, pred[:3])


def test_report_against_hand_computed_values():
    # true 0 0 1 2 2 / pred 0 1 1 2 0 (the matrix above)
    r = classification_report(torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 1]]))
    assert r["accuracy"] == pytest.approx(3 / 5)
    # class 0: p 1/2 r 1/2 f 1/2; class 1: p 1/2 r 1 f 2/3; class 2: p 1 r 1/2 f 2/3
    assert [c["precision"] for c in r["per_class"]] == pytest.approx([0.5, 0.5, 1.0])
    assert [c["recall"] for c in r["per_class"]] == pytest.approx([0.5, 1.0, 0.5])
    assert r["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert [c["support"] for c in r["per_class"]] == [2, 1, 2]
    # MCC: c=3, s=5, p=(2,2,1), t=(2,1,2): (15 - 8) / sqrt((25 - 9)(25 - 9)) = 7/16
    assert r["mcc"] == pytest.approx(7 / 16)


def test_degenerate_predictions_give_zero_not_nan():
    r = classification_report(torch.tensor([[0, 3, 0], [0, 2, 0], [0, 0, 0]]))
    assert r["mcc"] == 0.0 and r["per_class"][0]["precision"] == 0.0
    assert r["accuracy"] == pytest.approx(2 / 5)
    perfect = classification_report(torch.diag(torch.tensor([2, 3, 4])))
    assert perfect["mcc"] == pytest.approx(1.0) and perfect["macro_f1"] == pytest.approx(1.0)

"""Classification metrics in torch: confusion matrix, accuracy, per-class
precision/recall/F1, macro F1 and the multi-class Matthews correlation."""

from __future__ import annotations

import torch

import ma_features


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    """``[C, C]`` int64 counts, row = true class, column = predicted class.
    Entries of ``true`` equal to ``ma_features.IGNORE_INDEX`` are left out."""
    if true.shape != pred.shape:
        raise ValueError(f"true {tuple(true.shape)} and pred {tuple(pred.shape)} differ in shape")
    keep = true != ma_features.IGNORE_INDEX
    true, pred = true[keep].long(), pred[keep].long()
    for name, t in (("true", true), ("pred", pred)):
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} has classes outside 0..{num_classes - 1}")
    counts = torch.bincount(true * num_classes + pred, minlength=num_classes**2)
    return counts.view(num_classes, num_classes).cpu()


def classification_report(confusion: torch.Tensor) -> dict:
    """Accuracy, macro F1, MCC and per-class precision, recall, F1 and support
    of a confusion matrix; a ratio with a zero denominator is 0."""
    c = confusion.double()
    total = c.sum()
    tp = c.diagonal()
    predicted, actual = c.sum(0), c.sum(1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2 * precision * recall, precision + recall)
    # Gorodkin's multi-class MCC: (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)).
    covariance = tp.sum() * total - (predicted * actual).sum()
    spread = (total**2 - predicted.square().sum()) * (total**2 - actual.square().sum())
    mcc = covariance / spread.sqrt() if spread > 0 else torch.zeros(())
    return {
        "accuracy": float(_ratio(tp.sum(), total)),
        "macro_f1": float(f1.mean()),
        "mcc": float(mcc),
        "per_class": [{"precision": float(p), "recall": float(r), "f1": float(f),
                       "support": int(s)} for p, r, f, s in zip(precision, recall, f1, actual,
                                                                 strict=True)],
        "confusion": confusion.tolist(),
    }


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))

"""How every model is scored, on the same rows: windows of L ticks every
L/2, each scoring its last L/2 positions, so every scored tick has at least
L/2 ticks of context. A model is a predictor ``predict(x [B, L, F], dt [B,
L]) -> scores [B, L, H, 3]`` (argmax is the class): the network's, or a
baseline's of :mod:`ma_model.baselines`."""

from __future__ import annotations

import torch
from torch import nn

from .data import TickArrays, WindowDataset
from .metrics import classification_report, confusion_matrix


@torch.no_grad()
def scored_rows(arrays: TickArrays, length: int, predict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, labels)`` ``[rows, H]`` of ``predict`` on the last L/2
    positions of windows every L/2, in time order."""
    stride = max(1, length // 2)
    dataset = WindowDataset(arrays, length, stride)
    preds, labels = [], []
    for start in range(0, len(dataset), 64):
        items = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
        x, dt, y = (torch.stack(t) for t in list(zip(*items, strict=True))[:3])
        preds.append(predict(x, dt)[:, length - stride:].argmax(-1).flatten(0, 1).cpu())
        labels.append(y[:, length - stride:].flatten(0, 1))
    return torch.cat(preds), torch.cat(labels)


def report(pred: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One classification report per horizon (column)."""
    return [classification_report(confusion_matrix(labels[:, h], pred[:, h]))
            for h in range(labels.shape[1])]


def segment_f1(pred: torch.Tensor, labels: torch.Tensor, segments: int) -> list[list[float]]:
    """Macro F1 ``[segment][horizon]`` over ``segments`` consecutive, equal
    runs of the scored rows (they are in time order): how steady a model is
    through the split, without retraining (:mod:`ma_model.walk_forward`
    retrains)."""
    if segments < 1 or segments > len(pred):
        raise ValueError(f"--segments must be between 1 and the {len(pred)} scored rows, "
                         f"got {segments}")
    return [[r["macro_f1"] for r in report(p, y)]
            for p, y in zip(pred.tensor_split(segments), labels.tensor_split(segments),
                            strict=True)]


def network_predictor(model: nn.Module, device: torch.device):
    """The network as a predictor, in eval mode on ``device`` (bf16 on CUDA)."""
    model.eval()

    def predict(x, dt):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(x.to(device), dt.to(device))[0].float()
    return predict

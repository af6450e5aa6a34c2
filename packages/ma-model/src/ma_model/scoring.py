"""How every model is scored, on the same rows: windows of L ticks every
L/2, each scoring its last L/2 positions, so every scored tick has at least
L/2 ticks of context. A model is a predictor ``predict(x [B, L, F], dt [B,
L]) -> probabilities [B, L, H, 3]`` (down, stationary, up; argmax is the
class): the network's, or a baseline's of :mod:`ma_model.baselines`.
Probabilities, not just classes, so that several runs' can be averaged
(:func:`ensemble`)."""

from __future__ import annotations

import torch
from torch import nn

from .data import TickArrays, WindowDataset
from .decision import validation_rule
from .metrics import classification_report, confusion_matrix


@torch.no_grad()
def scored_rows(arrays: TickArrays, length: int, predict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities [rows, H, 3], labels [rows, H])`` of ``predict`` on
    the last L/2 positions of windows every L/2, in time order."""
    stride = max(1, length // 2)
    dataset = WindowDataset(arrays, length, stride)
    probabilities, labels = [], []
    for start in range(0, len(dataset), 64):
        items = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
        x, dt, y = (torch.stack(t) for t in list(zip(*items, strict=True))[:3])
        probabilities.append(predict(x, dt)[:, length - stride:].flatten(0, 1).cpu())
        labels.append(y[:, length - stride:].flatten(0, 1))
    return torch.cat(probabilities), torch.cat(labels)


def report(probabilities: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One classification report per horizon (column of ``labels``) of the
    most probable class."""
    pred = probabilities.argmax(-1)
    return [classification_report(confusion_matrix(labels[:, h], pred[:, h]))
            for h in range(labels.shape[1])]


def ensemble(scored: list[tuple[torch.Tensor, torch.Tensor]],
             val: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> list[dict]:
    """:func:`report` of the mean probabilities of several runs'
    :func:`scored_rows` (one model per seed) on the same rows. With ``val``
    (the same runs' validation rows), the decision rule fitted on the mean
    of their validation probabilities
    (:func:`ma_model.decision.validation_rule`) decides."""
    labels = scored[0][1]
    if any(not torch.equal(y, labels) for _, y in scored):
        raise ValueError("the runs score different rows (their data configs differ); an "
                         "ensemble needs the same rows")
    mean = torch.stack([p for p, _ in scored]).mean(0)
    if val is not None:
        val_mean = torch.stack([p for p, _ in val]).mean(0)
        mean = validation_rule((val_mean, val[0][1]), mean)[0]
    return report(mean, labels)


def segment_f1(probabilities: torch.Tensor, labels: torch.Tensor,
               segments: int) -> list[list[float]]:
    """Macro F1 ``[segment][horizon]`` over ``segments`` consecutive, equal
    runs of the scored rows (they are in time order): how steady a model is
    through the split, without retraining (:mod:`ma_model.walk_forward`
    retrains)."""
    if segments < 1 or segments > len(labels):
        raise ValueError(f"--segments must be between 1 and the {len(labels)} scored rows, "
                         f"got {segments}")
    return [[r["macro_f1"] for r in report(p, y)]
            for p, y in zip(probabilities.tensor_split(segments), labels.tensor_split(segments),
                            strict=True)]


def network_predictor(model: nn.Module, device: torch.device):
    """The network as a predictor (softmax of its direction logits), in eval
    mode on ``device`` (bf16 on CUDA)."""
    model.eval()

    def predict(x, dt):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(x.to(device), dt.to(device))[0].float().softmax(-1)
    return predict

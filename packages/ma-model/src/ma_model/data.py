"""Tick arrays -> model inputs, labels and sequence windows, split by time.

Every row of the series is computed once into a shared tensor; a sample is a
view into it (``Tensor.unfold``), so a dataset of a million overlapping
windows costs no more memory than the series.

Splits are contiguous in time (train, then validation, then test) and
separated by a gap of ``max(horizons) + sequence_length`` rows: no training
label reads a mid that a later split sees, and no window straddles two
splits. The validation split is optional (``data.val_fraction: 0``).
Normalisation statistics, and the TLOB label threshold, come from the
training rows only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

import ma_features

from .config import DataConfig
from .inputs import ModelInputs, raw_columns


def load_ticks(cfg: DataConfig) -> ma_features.Ticks:
    """The ticks ``cfg`` names: simulated, LOBSTER, Parquet or CSV."""
    if cfg.source == "simulator":
        return ma_features.simulate(cfg.events, levels=cfg.levels, seed=cfg.seed)
    if cfg.source == "lobster" and not cfg.file_path:
        return ma_features.lobster_sample()
    return ma_features.read_ticks(cfg.file_path, cfg.source)[0]


@dataclass(frozen=True)
class TickArrays:
    """One row per tick: inputs ``x [N, F]``, inter-arrival times ``dt [N]``
    in seconds, direction labels ``labels [N, H]`` (``ma_features.IGNORE_INDEX``
    where undefined) and the imbalance-change target ``target [N, H]`` with
    its mask ``target_valid``."""

    x: torch.Tensor
    dt: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor
    target_valid: torch.Tensor
    alpha: tuple[float, ...] = ()  # the label threshold of each horizon

    def rows(self, start: int, stop: int) -> TickArrays:
        return TickArrays(*(t[start:stop] for t in (self.x, self.dt, self.labels, self.target,
                                                     self.target_valid)), alpha=self.alpha)


def tlob_alpha(mid: torch.Tensor, horizons: tuple[int, ...], train_stop: int) -> tuple[float, ...]:
    """TLOB's threshold per horizon: half the mean absolute relative change
    ``|l_{t,k}|`` over the training rows ``t < train_stop`` whose window is
    complete (so about a third of them fall in each class on a drift-free day)."""
    change, valid = ma_features.smoothed_mid_change(mid[:train_stop], list(horizons))
    alphas = []
    for h, k in enumerate(horizons):
        if not bool(valid[:, h].any()):
            raise ValueError(f"data.alpha 'tlob': no training row has a complete window of "
                             f"horizon {k} ({train_stop} training rows)")
        alphas.append(0.5 * float(change[valid[:, h], h].abs().mean()))
    return tuple(alphas)


def balanced_class_weights(labels: torch.Tensor) -> torch.Tensor:
    """``[H, 3]`` float32: per horizon (column of ``labels [N, H]``), class c
    weighed ``n / (3 n_c)`` over the defined labels, so each class carries a
    third of the loss; a class never seen weighs 0 (it has no labels to weigh)."""
    defined = labels != ma_features.IGNORE_INDEX
    counts = torch.stack([((labels == c) & defined).sum(0) for c in range(3)], dim=1).double()
    if not bool((counts.sum(1) > 0).all()):
        raise ValueError("train.class_weight 'balanced': a horizon has no defined training label")
    weights = counts.sum(1, keepdim=True) / (3 * counts)
    return torch.where(counts > 0, weights, 0.0).float()


def tick_arrays(ticks: ma_features.Ticks, spec: ma_features.FeatureSpec,
                horizons: tuple[int, ...], alpha: float | tuple[float, ...] | str,
                train_stop: int | None = None) -> TickArrays:
    """The spec's columns, dt and both targets of ``ticks``, float32/int64,
    from one pass of the feature op: the labels read its mid, the
    regression target its imbalance. ``alpha`` ``"tlob"`` derives the
    threshold from the rows before ``train_stop`` (:func:`tlob_alpha`)."""
    if len(ticks) < 2:
        raise ValueError(f"need at least 2 ticks, got {len(ticks)}")
    columns = raw_columns(ticks, spec, extra=("mid", "imbalance"))
    if alpha == "tlob":
        if train_stop is None:
            raise ValueError("data.alpha 'tlob' needs the training rows (train_stop)")
        alpha = tlob_alpha(columns["mid"], tuple(horizons), train_stop)
    alphas = tuple(alpha) if isinstance(alpha, (tuple, list)) else (float(alpha),) * len(horizons)
    labels = ma_features.direction_labels(columns["mid"], list(horizons), list(alphas))
    target = ma_features.imbalance_change(columns["imbalance"], list(horizons))
    return TickArrays(columns["x"].float(), columns["dt"].float(), labels, target.value.float(),
                      target.valid, alpha=alphas)


class WindowDataset(Dataset):
    """Windows of ``length`` rows every ``stride`` rows, each item a view.

    Item ``i`` is ``(x [L, F], dt [L], labels [L, H], target [L, H],
    target_valid [L, H])`` for rows ``i * stride .. i * stride + L - 1``.
    """

    def __init__(self, arrays: TickArrays, length: int, stride: int) -> None:
        n = len(arrays.x)
        if n < length:
            raise ValueError(f"a split of {n} rows is shorter than one sequence of {length}")
        self.length, self.stride = length, stride
        self._x = arrays.x.unfold(0, length, stride).transpose(1, 2)
        self._dt = arrays.dt.unfold(0, length, stride)
        self._labels = arrays.labels.unfold(0, length, stride).transpose(1, 2)
        self._target = arrays.target.unfold(0, length, stride).transpose(1, 2)
        self._valid = arrays.target_valid.unfold(0, length, stride).transpose(1, 2)

    def __len__(self) -> int:
        return self._x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self._x[i], self._dt[i], self._labels[i], self._target[i], self._valid[i]


def mirror_rows(x: torch.Tensor, labels: torch.Tensor, sign: torch.Tensor,
                offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bid/ask mirror of inputs ``x [..., F]`` and their labels ``[...]``
    or ``[..., H]``: ``x * sign + offset`` (``(sign, offset)`` of
    :meth:`ma_model.inputs.ModelInputs.mirror`), down and up swapped,
    undefined labels kept. The one mirror formula of the network's windows
    (:class:`MirroredWindows`) and of the tabular baselines
    (:class:`ma_model.baselines.TabularMirror`)."""
    labels = torch.where(labels == ma_features.IGNORE_INDEX, labels, 2 - labels)
    return x * sign.to(x.dtype) + offset.to(x.dtype), labels


class MirroredWindows(Dataset):
    """The windows of ``windows``, each replaced, with probability ``p`` per
    draw, by its bid/ask mirror (:func:`mirror_rows`): inputs ``x * sign +
    offset``, labels down and up swapped, the regression target (the change
    of the imbalance) negated. The draws come from torch's global generator,
    so a seed gives the same windows."""

    def __init__(self, windows: WindowDataset, p: float, sign: torch.Tensor,
                 offset: torch.Tensor) -> None:
        self.windows, self.p, self.sign, self.offset = windows, p, sign, offset

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x, dt, labels, target, valid = self.windows[i]
        if float(torch.rand(())) >= self.p:
            return x, dt, labels, target, valid
        x, labels = mirror_rows(x, labels, self.sign, self.offset)
        return x, dt, labels, -target, valid


class RecencySampler(Sampler):
    """Each epoch, ``len(windows)`` draws with replacement, window i of n
    with probability growing as ``ratio ** (i / (n - 1))`` (the last window
    ``ratio`` times as likely as the first: the training split's latest
    rows, nearest the rows scored, count most). The draws depend on ``seed``
    and the epoch only; each of ``num_replicas`` processes takes every W-th
    of the first ``n - n % W``."""

    def __init__(self, windows: Dataset, ratio: float, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0) -> None:
        n = len(windows)
        self.weights = torch.exp(math.log(ratio) * torch.arange(n, dtype=torch.float64)
                                 / max(n - 1, 1))
        self.world, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights) // self.world

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        draws = torch.multinomial(self.weights, len(self) * self.world, replacement=True,
                                  generator=generator)
        return iter(draws[self.rank::self.world].tolist())


@dataclass
class Splits:
    """Normalised arrays of the three time splits, their row ranges, and the
    inputs' statistics fitted on train (saved in checkpoints for inference)."""

    train: TickArrays
    val: TickArrays
    test: TickArrays
    ranges: dict[str, tuple[int, int]]
    inputs: ModelInputs

    def normalization_state(self) -> dict:
        return self.inputs.state_dict()


def split_ranges(n: int, cfg: DataConfig) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of train, val and test, in time order with
    gaps of ``max(horizons) + sequence_length`` rows between them; with
    ``val_fraction`` 0, val is the empty range at the end of train and one
    gap separates train from test."""
    gap = max(cfg.horizons) + cfg.sequence_length
    n_val, n_test = int(n * cfg.val_fraction), int(n * cfg.test_fraction)
    gaps = 2 if n_val else 1
    n_train = n - n_val - n_test - gaps * gap
    shortest = min(n_train, n_val or n_train, n_test)
    if shortest < cfg.sequence_length:
        raise ValueError(
            f"{n} rows are too few for train/val/test splits of at least sequence_length "
            f"{cfg.sequence_length} rows each with gaps of {gap} rows (max horizon + "
            f"sequence_length) between them: use more events or a shorter sequence"
        )
    if not n_val:
        return {"train": (0, n_train), "val": (n_train, n_train), "test": (n_train + gap, n)}
    val_start = n_train + gap
    test_start = val_start + n_val + gap
    return {"train": (0, n_train), "val": (val_start, val_start + n_val),
            "test": (test_start, n)}


def prepare(arrays: TickArrays, cfg: DataConfig, normalization: dict | None = None,
            ranges: dict[str, tuple[int, int]] | None = None) -> Splits:
    """Splits ``arrays`` (of the spec ``cfg.features``) by time and normalises
    inputs with train statistics (or the given ``normalization`` state of an
    earlier run). ``ranges``: the splits' rows (default
    :func:`split_ranges`; a walk-forward fold gives its own)."""
    ranges = ranges or split_ranges(len(arrays.x), cfg)
    train_rows = arrays.rows(*ranges["train"])
    if normalization is None:
        inputs = ModelInputs.fit(cfg.features, train_rows.x, train_rows.dt,
                                 cfg.rolling_normalization)
    else:
        inputs = ModelInputs.from_state(cfg.features, normalization)
        if inputs.rolling != cfg.rolling_normalization:
            raise ValueError(f"the normalization's rolling window {inputs.rolling} differs "
                             f"from data.rolling_normalization {cfg.rolling_normalization}")
    x, dt = inputs.normalize(arrays.x, arrays.dt)
    normalised = TickArrays(x, dt, arrays.labels, arrays.target, arrays.target_valid,
                            alpha=arrays.alpha)
    parts = {name: normalised.rows(*r) for name, r in ranges.items()}
    return Splits(**parts, ranges=ranges, inputs=inputs)


def load_splits(cfg: DataConfig, normalization: dict | None = None) -> Splits:
    """:func:`prepare` of the ticks ``cfg`` names."""
    ticks = load_ticks(cfg)
    train_stop = split_ranges(len(ticks), cfg)["train"][1]
    arrays = tick_arrays(ticks, cfg.features, cfg.horizons, cfg.alpha, train_stop)
    return prepare(arrays, cfg, normalization)

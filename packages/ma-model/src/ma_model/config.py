"""Run configuration: three dataclasses (model, data, train) and a grid.

A YAML file has sections ``model:``, ``data:``, ``train:`` and optionally
``param_grid:``. The original design's flat keys are accepted at the top
level and mapped (:data:`LEGACY_KEYS`); any other key is an error that names
it, so a typo never silently trains with a default.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

import ma_features

ATTENTION_KINDS = ("ma", "sdpa_dense", "flex")
# torch.compile's modes, for train.compile.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The modes that replay CUDA graphs of their own, which cannot nest in train.cuda_graph's.
GRAPHED_COMPILE_MODES = ("reduce-overhead", "max-autotune")
DATA_SOURCES = ("simulator", "lobster", "parquet", "csv")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of :class:`~ma_model.MATransformer`.

    ``input_dim`` is the number of columns of ``data.features``: left unset
    (None), training sets it from the spec; set, it must match.

    ``dilations`` has one entry per layer: layer i attends to ``window`` keys
    spaced ``dilations[i]`` ticks apart. ``attention`` picks the kernel:
    ``ma`` (ma_kernels' sliding window), ``flex`` (the same window through
    FlexAttention) or ``sdpa_dense`` (dense causal attention, the baseline).
    """

    input_dim: int | None = None
    model_dim: int = 32
    num_heads: int = 2
    num_layers: int = 2
    window: int = 32
    dilations: tuple[int, ...] = (1, 2)
    mlp_ratio: int = 4
    time_frequencies: int = 8
    num_horizons: int = 2
    num_regression: int = 2
    dropout: float = 0.0
    attention: str = "ma"

    def __post_init__(self) -> None:
        if self.input_dim is not None:
            _positive_int("model.input_dim", self.input_dim)
        for name in ("model_dim", "num_heads", "num_layers", "window", "mlp_ratio",
                     "time_frequencies", "num_horizons"):
            _positive_int(f"model.{name}", getattr(self, name))
        if isinstance(self.num_regression, bool) or not isinstance(self.num_regression, int) \
                or self.num_regression < 0:
            raise ValueError(f"model.num_regression must be an int >= 0, got "
                             f"{self.num_regression!r}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model.model_dim ({self.model_dim}) must be divisible by "
                             f"model.num_heads ({self.num_heads})")
        if (self.model_dim // self.num_heads) % 2:
            raise ValueError(f"head dim model_dim/num_heads = {self.model_dim // self.num_heads} "
                             "must be even (rotary position encoding rotates pairs)")
        object.__setattr__(self, "dilations", tuple(self.dilations))
        if len(self.dilations) != self.num_layers:
            raise ValueError(f"model.dilations has {len(self.dilations)} entries for "
                             f"{self.num_layers} layers")
        for d in self.dilations:
            _positive_int("each of model.dilations", d)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"model.attention must be one of {ATTENTION_KINDS}, "
                             f"got {self.attention!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where ticks come from and how they become windows and labels.

    ``source``: ``simulator`` (``events`` ticks of ``ma_features.simulate``
    with ``seed`` and ``levels`` book levels per side), ``lobster``
    (``file_path`` is a message file, its orderbook file beside it; the
    shipped AAPL sample when empty),
    ``parquet`` or ``csv`` (``file_path`` written by ma_features).
    ``features``: the model's inputs, a ``ma_features.FeatureSpec`` (in YAML
    a mapping of its fields; default ``FeatureSpec.model_inputs()``).
    Splits are by time, in this order: train, validation, test;
    ``val_fraction: 0`` trains without a validation split (no early
    stopping: the last epoch is the best).
    ``alpha``: the label threshold: one number, one per horizon, or
    ``tlob``: per horizon half the mean absolute relative change of the
    training split's rows (TLOB's rule; :func:`ma_model.data.tlob_alpha`).
    """

    source: str = "simulator"
    file_path: str | None = None
    events: int = 60_000
    seed: int = 0
    levels: int = 10
    sequence_length: int = 64
    horizons: tuple[int, ...] = (10, 50)
    alpha: float | tuple[float, ...] | str = 0.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    features: ma_features.FeatureSpec = field(default_factory=ma_features.FeatureSpec.model_inputs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", _spec("data.features", self.features))
        if self.source not in DATA_SOURCES:
            raise ValueError(f"data.source must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.source in ("parquet", "csv") and not self.file_path:
            raise ValueError(f"data.source {self.source!r} needs data.file_path")
        _positive_int("data.events", self.events)
        _positive_int("data.levels", self.levels)
        _positive_int("data.sequence_length", self.sequence_length)
        object.__setattr__(self, "horizons", tuple(self.horizons))
        if not self.horizons:
            raise ValueError("data.horizons must not be empty")
        for k in self.horizons:
            _positive_int("each of data.horizons", k)
        object.__setattr__(self, "alpha", _alpha(self.alpha, len(self.horizons)))
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"data.val_fraction must be in [0, 0.5), got {self.val_fraction!r}")
        if not 0 < self.test_fraction < 0.5:
            raise ValueError(f"data.test_fraction must be in (0, 0.5), got {self.test_fraction!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: AdamW, linear warmup then cosine decay to
    ``min_lr_ratio * learning_rate``, early stopping after ``patience``
    epochs without a lower validation loss. ``compile``: train the model
    through ``torch.compile`` (validation runs it eagerly): false, true (the
    default mode) or a mode of :data:`COMPILE_MODES`; ``reduce-overhead``
    replays each step as CUDA graphs, which pays where the host is slower
    than the GPU's kernels (small models, long sequences on a fast GPU).
    ``cuda_graph`` (CUDA only): capture the whole step (forward, backward,
    clipping, AdamW) as one CUDA graph after a few eager steps and replay it,
    so the host issues one launch per step; with ``compile`` true, the
    fastest way to train on a GPU (``compile`` must then not be a mode that
    replays graphs of its own).
    ``max_minutes``: a wall-clock budget beside ``epochs`` (None: none); fit
    stops after the step that spends it, grid search shares it between its
    points, and ma-eval's baselines take it too."""

    batch_size: int = 32
    epochs: int = 6
    patience: int = 3
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    regression_weight: float = 0.1
    stride: int = 16
    seed: int = 0
    device: str = "auto"
    compile: bool | str = False
    cuda_graph: bool = False
    out_dir: str = "runs/default"
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "patience", "stride"):
            _positive_int(f"train.{name}", getattr(self, name))
        if self.max_minutes is not None and (isinstance(self.max_minutes, bool) or not isinstance(
                self.max_minutes, (int, float)) or not self.max_minutes > 0):
            raise ValueError(f"train.max_minutes must be a number > 0 or null, got "
                             f"{self.max_minutes!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"train.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if not (isinstance(self.compile, bool) or self.compile in COMPILE_MODES):
            raise ValueError(f"train.compile must be true, false or one of {COMPILE_MODES}, "
                             f"got {self.compile!r}")
        if not isinstance(self.cuda_graph, bool):
            raise ValueError(f"train.cuda_graph must be true or false, got {self.cuda_graph!r}")
        if self.cuda_graph and self.compile in GRAPHED_COMPILE_MODES:
            raise ValueError(f"train.cuda_graph captures the whole step, so train.compile "
                             f"cannot be {self.compile!r} (CUDA graphs of its own); use true")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    param_grid: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grid = {}
        for key, values in dict(self.param_grid).items():
            if key not in GRID_KEYS:
                raise ValueError(f"param_grid: unknown key {key!r}; allowed {sorted(GRID_KEYS)}")
            values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if not values:
                raise ValueError(f"param_grid.{key} must list at least one value")
            if key == "features":
                values = tuple(_spec(f"param_grid.features[{i}]", v) for i, v in enumerate(values))
            grid[key] = values
        object.__setattr__(self, "param_grid", grid)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only: it goes into checkpoints and YAML."""
        out = asdict(self)
        for section in ("model", "data"):
            for k, v in out[section].items():
                if isinstance(v, tuple):
                    out[section][k] = list(v)
        out["data"]["features"] = self.data.features.to_dict()
        out["param_grid"] = {k: [_plain(v) for v in values]
                             for k, values in self.param_grid.items()}
        return out

    def grid(self) -> list[Config]:
        """One config per point of ``param_grid`` (just this one when empty),
        each with its own ``out_dir``."""
        if not self.param_grid:
            return [self]
        keys = sorted(self.param_grid)
        points = []
        choices = [list(enumerate(self.param_grid[k])) for k in keys]
        for point in itertools.product(*choices):
            cfg = replace(self, param_grid={})
            for key, (_, value) in zip(keys, point, strict=True):
                cfg = _set(cfg, GRID_KEYS[key], value)
            # A spec names its run by its place in the list, a number by its value.
            name = "-".join(f"{k}={v if isinstance(v, (int, float, str)) else i}"
                            for k, (i, v) in zip(keys, point, strict=True))
            points.append(_set(cfg, ("train", "out_dir"), f"{self.train.out_dir}/{name}"))
        return points


# The original design's flat keys -> (section, field).
LEGACY_KEYS = {
    "file_path": ("data", "file_path"),
    "sequence_length": ("data", "sequence_length"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "patience": ("train", "patience"),
    "input_dim": ("model", "input_dim"),
}
GRID_KEYS = {
    "features": ("data", "features"),
    "learning_rate": ("train", "learning_rate"),
    "model_dim": ("model", "model_dim"),
    "num_heads": ("model", "num_heads"),
    "num_layers": ("model", "num_layers"),
    "seed": ("train", "seed"),
}
_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Builds a :class:`Config` from nested sections and/or legacy flat keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    grid = raw.get("param_grid") or {}
    if not isinstance(grid, dict):
        raise ValueError(f"{source}: param_grid must be a mapping of key -> list of values")
    for key, value in raw.items():
        if key == "param_grid":
            continue
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: section {key!r} must be a mapping")
            known = {f.name for f in fields(_SECTIONS[key])}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"{source}: unknown keys {unknown} in section {key!r}; "
                                 f"known: {sorted(known)}")
            sections[key].update(value)
        elif key in LEGACY_KEYS:
            section, name = LEGACY_KEYS[key]
            sections[section][name] = value
        else:
            raise ValueError(f"{source}: unknown key {key!r}; expected sections "
                             f"{sorted(_SECTIONS)}, param_grid, or {sorted(LEGACY_KEYS)}")
    if sections["data"].get("file_path") and "source" not in sections["data"]:
        sections["data"]["source"] = ma_features.source_of(sections["data"]["file_path"])
    if "num_layers" in sections["model"] and "dilations" not in sections["model"]:
        sections["model"]["dilations"] = _default_dilations(sections["model"]["num_layers"])
    try:
        return Config(**{name: cls(**sections[name]) for name, cls in _SECTIONS.items()},
                      param_grid=grid)
    except TypeError as e:  # a wrong value type reaching a comparison
        raise ValueError(f"{source}: {e}") from e
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def load_config(path: str | Path | None = None) -> Config:
    """The YAML file at ``path``, or the built-in defaults when None."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    return config_from_dict(raw, str(path))


def _set(cfg: Config, where: tuple[str, str], value: Any) -> Config:
    section, name = where
    changes = {name: value}
    if name == "num_layers":  # dilations must follow the depth
        changes["dilations"] = _default_dilations(value)
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})


def _default_dilations(num_layers: int) -> tuple[int, ...]:
    """1, 2, 4, 8, 8, ...: the first layer sees every tick, deeper ones reach further."""
    _positive_int("model.num_layers", num_layers)
    return tuple(2 ** min(i, 3) for i in range(num_layers))


def _spec(name: str, value: Any) -> ma_features.FeatureSpec:
    try:
        spec = ma_features.FeatureSpec.from_dict(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e
    if not spec.names:
        raise ValueError(f"{name} selects no columns: the model needs at least one")
    return spec


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, ma_features.FeatureSpec) else value


ALPHA_RULES = ("tlob",)


def _alpha(value: Any, horizons: int) -> float | tuple[float, ...] | str:
    """``data.alpha`` checked: a rule name, a number >= 0 or one per horizon."""
    if isinstance(value, str):
        if value not in ALPHA_RULES:
            raise ValueError(f"data.alpha must be a number >= 0, a list of one per horizon, or "
                             f"one of {ALPHA_RULES}; got {value!r}")
        return value
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and len(values) != horizons:
        raise ValueError(f"data.alpha lists {len(values)} values for {horizons} horizons")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"data.alpha values must be numbers >= 0, got {v!r}")
    return tuple(float(v) for v in values) if isinstance(value, (list, tuple)) else float(value)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")

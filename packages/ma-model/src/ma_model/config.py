"""Run configuration: three dataclasses (model, data, train) and a grid.

A YAML file has sections ``model:``, ``data:``, ``train:`` and optionally
``param_grid:``. The original design's flat keys are accepted at the top
level and mapped (:data:`LEGACY_KEYS`); any other key is an error that names
it, so a typo never silently trains with a default.

Each field's type is its schema: pydantic checks every value as a section
is built (also by ``dataclasses.replace``), so a YAML slip (``learning_rate:
fast``, ``dilations: 2``, ``grad_clip: -1``) is an error that names the key.
Ints are strict (``epochs: 3.5`` is refused, ``true`` is no number); a float
also takes an int or a number written as a string (PyYAML reads ``1e-3``,
without a dot, as one). A new field is one line: a name, a type of the
aliases below (or any pydantic type) and a default.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

import ma_features

ATTENTION_KINDS = ("ma", "sdpa_dense", "flex")
# torch.compile's modes, for train.compile.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The modes that replay CUDA graphs of their own, which cannot nest in train.cuda_graph's.
GRAPHED_COMPILE_MODES = ("reduce-overhead", "max-autotune")
DATA_SOURCES = ("simulator", "lobster", "parquet", "csv")
DEVICES = ("auto", "cpu", "cuda")
# train.class_weight's rules: "balanced", each class weighed by n / (3 n_c) per horizon.
CLASS_WEIGHTS = ("balanced",)
# data.alpha's rules: "tlob", half the mean absolute relative change of the train rows.
ALPHA_RULES = ("tlob",)
# model.num_layers at most: deeper than any model this family trains, and a
# bound before default dilations are built for the depth.
MAX_LAYERS = 64
# data.rolling_normalization at most (ticks): the engine keeps that many
# inputs per instrument.
MAX_ROLLING = 100_000


def _no_bool(value: Any) -> Any:
    # YAML's true/yes are bools, which Python would take as the number 1.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_number", "Input should be a number, not true/false")
    return value


Count = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Real = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
PositiveReal = Annotated[Real, Field(gt=0)]
NonNegativeReal = Annotated[Real, Field(ge=0)]
Ratio = Annotated[Real, Field(ge=0, le=1)]
SplitFraction = Annotated[Real, Field(gt=0, lt=0.5)]
def _alpha(value: Any) -> float | tuple[float, ...] | str:
    # One message for the three forms (a pydantic union would list each one's failure).
    if isinstance(value, str) and value in ALPHA_RULES:
        return value
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    numbers = []
    for v in values:
        try:
            number = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise PydanticCustomError(
                "alpha", "Input should be greater than or equal to 0: a number, one per "
                "horizon, or one of {rules}", {"rules": ALPHA_RULES})
        numbers.append(number)
    return tuple(numbers) if isinstance(value, (list, tuple)) else numbers[0]


Alpha = Annotated[Any, BeforeValidator(_alpha)]
Features = Annotated[ma_features.FeatureSpec,
                     BeforeValidator(lambda value: _spec("data.features", value))]

_SCHEMA = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@dataclass(frozen=True, config=_SCHEMA)
class ModelConfig:
    """Sizes of :class:`~ma_model.MATransformer`.

    ``input_dim`` is the number of columns of ``data.features``: left unset
    (None), training sets it from the spec; set, it must match.

    ``dilations`` has one entry per layer: layer i attends to ``window`` keys
    spaced ``dilations[i]`` ticks apart. ``attention`` picks the kernel:
    ``ma`` (ma_kernels' sliding window), ``flex`` (the same window through
    FlexAttention) or ``sdpa_dense`` (dense causal attention, the baseline).
    """

    input_dim: Count | None = None
    model_dim: Count = 32
    num_heads: Count = 2
    num_layers: Annotated[Count, Field(le=MAX_LAYERS)] = 2
    window: Count = 32
    dilations: tuple[Count, ...] = (1, 2)
    mlp_ratio: Count = 4
    time_frequencies: Count = 8
    num_horizons: Count = 2
    num_regression: NonNegativeInt = 2
    dropout: Annotated[Real, Field(ge=0, lt=1)] = 0.0
    attention: Literal[ATTENTION_KINDS] = "ma"

    def __post_init__(self) -> None:  # checks across fields; each field's own is its type
        if self.model_dim % self.num_heads:
            raise ValueError(f"model.model_dim ({self.model_dim}) must be divisible by "
                             f"model.num_heads ({self.num_heads})")
        if (self.model_dim // self.num_heads) % 2:
            raise ValueError(f"head dim model_dim/num_heads = {self.model_dim // self.num_heads} "
                             "must be even (rotary position encoding rotates pairs)")
        if len(self.dilations) != self.num_layers:
            raise ValueError(f"model.dilations has {len(self.dilations)} entries for "
                             f"{self.num_layers} layers")


@dataclass(frozen=True, config=_SCHEMA)
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
    ``rolling_normalization``: null, or a number of ticks N: each input,
    once standardised with the training split's statistics, is standardised
    again against its own last N ticks, this one included
    (:func:`ma_model.inputs.rolling_standardize`), so a level that drifts
    through the day reads as its deviation from the recent past.
    """

    source: Literal[DATA_SOURCES] = "simulator"
    file_path: str | None = None
    events: Count = 60_000
    seed: NonNegativeInt = 0
    levels: Count = 10
    sequence_length: Count = 64
    horizons: Annotated[tuple[Count, ...], Field(min_length=1)] = (10, 50)
    alpha: Alpha = 0.0
    val_fraction: Annotated[Real, Field(ge=0, lt=0.5)] = 0.15  # 0: no validation split
    test_fraction: SplitFraction = 0.15
    features: Features = field(default_factory=ma_features.FeatureSpec.model_inputs)
    rolling_normalization: Annotated[Count, Field(le=MAX_ROLLING)] | None = None

    def __post_init__(self) -> None:
        if self.source in ("parquet", "csv") and not self.file_path:
            raise ValueError(f"data.source {self.source!r} needs data.file_path")
        if isinstance(self.alpha, tuple) and len(self.alpha) != len(self.horizons):
            raise ValueError(f"data.alpha lists {len(self.alpha)} values for "
                             f"{len(self.horizons)} horizons")


@dataclass(frozen=True, config=_SCHEMA)
class TrainConfig:
    """Optimisation: AdamW, linear warmup then cosine decay to
    ``min_lr_ratio * learning_rate``, early stopping after ``patience``
    epochs without a lower validation loss; ``grad_clip`` bounds the
    gradient's norm (null: no clipping). ``compile``: train the model
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
    points, and ma-eval's baselines take it too.
    ``mirror``: the probability that a training window is replaced by its
    bid/ask mirror (odd inputs negated, down and up swapped:
    :class:`ma_model.data.MirroredWindows`); 0, the default, never. Needs a
    spec without price levels. ma-eval's learned baselines get it too: the
    dense network the same windows, the logistic regression and the trees
    the mirrors of that fraction of their rows added
    (:class:`ma_model.baselines.TabularMirror`). ``recency``: 1 (the default) draws every
    training window once an epoch in a shuffled order; above 1, windows are
    drawn with replacement, the latest ``recency`` times as likely as the
    earliest (:class:`ma_model.data.RecencySampler`).
    ``class_weight``: null (every label counts the same) or ``balanced``:
    per horizon, class c's cross-entropy weighed by ``n / (3 n_c)`` of the
    training split's labels (scikit-learn's rule), so the rarer moves count
    as much as the common stationary class; validation loss, and so early
    stopping, uses the same weights, and ma-eval's logistic and tree
    baselines are fitted with them too."""

    batch_size: Count = 32
    epochs: Count = 6
    patience: Count = 3
    learning_rate: PositiveReal = 3e-3
    weight_decay: NonNegativeReal = 0.01
    warmup_steps: NonNegativeInt = 20
    min_lr_ratio: Ratio = 0.1
    grad_clip: PositiveReal | None = 1.0
    regression_weight: NonNegativeReal = 0.1
    stride: Count = 16
    seed: NonNegativeInt = 0
    device: Literal[DEVICES] = "auto"
    compile: Literal[(False, True, *COMPILE_MODES)] = False
    cuda_graph: StrictBool = False
    out_dir: Annotated[str, Field(min_length=1)] = "runs/default"
    max_minutes: PositiveReal | None = None
    class_weight: Literal[CLASS_WEIGHTS] | None = None
    mirror: Ratio = 0.0
    recency: Annotated[Real, Field(ge=1)] = 1.0

    def __post_init__(self) -> None:
        if self.cuda_graph and self.compile in GRAPHED_COMPILE_MODES:
            raise ValueError(f"train.cuda_graph captures the whole step, so train.compile "
                             f"cannot be {self.compile!r} (CUDA graphs of its own); use true")


@dataclass(frozen=True, config=_SCHEMA)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    param_grid: dict[str, Any] = field(default_factory=dict)

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
    file_path = sections["data"].get("file_path")
    if isinstance(file_path, str) and file_path and "source" not in sections["data"]:
        try:
            sections["data"]["source"] = ma_features.source_of(file_path)
        except ValueError as e:
            raise ValueError(f"{source}: data.file_path: {e}") from None
    layers = sections["model"].get("num_layers")
    if "dilations" not in sections["model"] and _is_depth(layers):
        sections["model"]["dilations"] = _default_dilations(layers)
    try:
        cfg = Config(**sections, param_grid=grid)
        cfg.grid()  # every point of the grid must be a valid config too
    except ValidationError as e:
        raise ValueError(f"{source}: {explain(e)}") from None
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e
    return cfg


def explain(error: ValidationError, prefix: str = "") -> str:
    """pydantic's errors in the config's terms: ``train.grad_clip: Input
    should be greater than 0, got -1``, one per bad value (``prefix``: the
    section of a section's own errors)."""
    lines = []
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "value_error":  # our own checks name their keys
            lines.append(message)
        else:
            where = prefix + ".".join(str(part) for part in e["loc"])
            lines.append(f"{where}: {message}, got {e['input']!r}")
    return "; ".join(lines)


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
    if name == "num_layers" and _is_depth(value):  # dilations must follow the depth
        changes["dilations"] = _default_dilations(value)
    try:
        return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    except ValidationError as e:
        raise ValueError(f"param_grid: {explain(e, f'{section}.')}") from None


def _is_depth(value: Any) -> bool:
    """A valid model.num_layers (else the schema says what is wrong with it)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LAYERS


def _default_dilations(num_layers: int) -> tuple[int, ...]:
    """1, 2, 4, 8, 8, ...: the first layer sees every tick, deeper ones reach further."""
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

from dataclasses import replace
from pathlib import Path

import pytest

import ma_features
from ma_model import Config, config_from_dict, load_config

REPO_DEFAULT = Path(__file__).resolve().parents[3] / "configs" / "default.yaml"


def test_builtin_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.model.attention == "ma" and len(cfg.model.dilations) == cfg.model.num_layers


def test_original_design_keys_map_onto_the_sections(tmp_path):
    path = tmp_path / "legacy.yaml"
    path.write_text(
        "file_path: data/AAPL_message_10.csv\nsequence_length: 32\nbatch_size: 16\n"
        "epochs: 7\npatience: 2\ninput_dim: 6\n"
        "param_grid:\n  learning_rate: [0.001, 0.003]\n  model_dim: [16, 32]\n"
        "  num_heads: [2]\n  num_layers: [1, 3]\n"
    )
    cfg = load_config(path)
    assert cfg.data.file_path == "data/AAPL_message_10.csv" and cfg.data.source == "lobster"
    assert (cfg.data.sequence_length, cfg.train.batch_size, cfg.train.epochs,
            cfg.train.patience, cfg.model.input_dim) == (32, 16, 7, 2, 6)
    points = cfg.grid()
    assert len(points) == 8
    assert {(p.train.learning_rate, p.model.model_dim, p.model.num_layers) for p in points} == {
        (lr, d, n) for lr in (0.001, 0.003) for d in (16, 32) for n in (1, 3)}
    three = next(p for p in points if p.model.num_layers == 3)
    assert three.model.dilations == (1, 2, 4)
    assert len({p.train.out_dir for p in points}) == 8 and not points[0].param_grid


def test_sections_and_round_trip_through_to_dict():
    cfg = config_from_dict({"model": {"dilations": [1, 4], "window": 8},
                            "data": {"source": "parquet", "file_path": "t.parquet"},
                            "train": {"epochs": 3}})
    assert cfg.model.dilations == (1, 4) and cfg.data.source == "parquet"
    assert config_from_dict(cfg.to_dict()) == cfg


def test_features_are_a_spec_in_yaml_and_round_trip(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("data:\n  features:\n    instant: [spread, imbalance, ofi]\n"
                    "    rolling: [ofi, vwap]\n    windows: [10, 100]\n"
                    "    time_windows: [1000000000]\n")
    cfg = load_config(path)
    assert cfg.data.features == ma_features.FeatureSpec(
        instant=("spread", "imbalance", "ofi"), rolling=("ofi", "vwap"), windows=(10, 100),
        time_windows=(1_000_000_000,))
    assert config_from_dict(cfg.to_dict()) == cfg
    assert Config().data.features == ma_features.FeatureSpec.model_inputs()


def test_grid_over_feature_specs_names_each_by_its_place():
    specs = [{"instant": ["spread"], "rolling": []}, {"windows": [10]}]
    cfg = config_from_dict({"param_grid": {"features": specs, "learning_rate": [0.01]}})
    points = cfg.grid()
    assert [p.data.features for p in points] == [ma_features.FeatureSpec.from_dict(s)
                                                 for s in specs]
    assert [p.train.out_dir for p in points] == ["runs/default/features=0-learning_rate=0.01",
                                                 "runs/default/features=1-learning_rate=0.01"]
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("raw, message", [
    ({"data": {"features": {"instant": ["mid", "midprice"]}}}, "data.features: .*midprice"),
    ({"data": {"features": {"windoze": [3]}}}, r"unknown FeatureSpec fields \['windoze'\]"),
    ({"data": {"features": ["spread"]}}, "data.features: a feature spec must be a mapping"),
    ({"data": {"features": {"instant": [], "rolling": []}}}, "selects no columns"),
    ({"param_grid": {"features": [{"ofi_levels": -1}]}}, r"features\[0\]: FeatureSpec.ofi_lev"),
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"model": {"model_dims": 3}}, r"unknown keys \['model_dims'\] in section 'model'"),
    ({"param_grid": {"dropout": [0.1]}}, "param_grid: unknown key 'dropout'"),
    ({"model": {"model_dim": 30, "num_heads": 4}}, "divisible"),
    ({"model": {"num_layers": 3, "dilations": [1, 2]}}, "3 layers"),
    ({"model": {"attention": "linear"}}, "model.attention: Input should be 'ma', 'sdpa_dense' or"),
    ({"batch_size": 0}, "train.batch_size: Input should be greater than or equal to 1, got 0"),
    # YAML slips, each named by its key (issue 22)
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate: .*valid number.*, got 'fast'"),
    ({"model": {"dilations": 2}}, "model.dilations: Input should be a valid tuple, got 2"),
    ({"model": {"dilations": [1, 0]}}, r"model.dilations.1: .*greater than or equal to 1"),
    ({"train": {"epochs": 2.5}}, "train.epochs: Input should be a valid integer, got 2.5"),
    ({"train": {"epochs": True}}, "train.epochs: Input should be a valid integer, got True"),
    ({"train": {"learning_rate": True}}, "train.learning_rate: .*not true/false"),
    ({"train": {"grad_clip": -1}}, "train.grad_clip: Input should be greater than 0, got -1"),
    ({"train": {"warmup_steps": -5}}, "train.warmup_steps: .*greater than or equal to 0"),
    ({"train": {"min_lr_ratio": -2}}, "train.min_lr_ratio: .*greater than or equal to 0"),
    ({"train": {"min_lr_ratio": 1.5}}, "train.min_lr_ratio: .*less than or equal to 1"),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay: .*greater than or equal to 0"),
    ({"train": {"regression_weight": float("nan")}}, "train.regression_weight: .*finite"),
    ({"train": {"learning_rate": float("inf")}}, "train.learning_rate: .*finite"),
    ({"train": {"cuda_graph": "yes"}}, "train.cuda_graph: .*valid boolean, got 'yes'"),
    ({"train": {"compile": "fast"}}, "train.compile: Input should be False, True, 'default'"),
    ({"train": {"device": "gpu"}}, "train.device: Input should be 'auto', 'cpu' or 'cuda'"),
    ({"train": {"out_dir": ""}}, "train.out_dir: .*at least 1 character"),
    ({"data": {"alpha": -0.1}}, "data.alpha: .*greater than or equal to 0"),
    ({"data": {"seed": -1}}, "data.seed: .*greater than or equal to 0"),
    ({"data": {"horizons": []}}, "data.horizons: .*at least 1 item"),
    ({"data": {"val_fraction": 0.5}}, "data.val_fraction: .*less than 0.5"),
    ({"data": {"file_path": 7, "source": "csv"}}, "data.file_path: .*valid string, got 7"),
    ({"model": {"num_layers": "two"}}, "model.num_layers: .*valid integer, got 'two'"),
    ({"model": {"dropout": 1}}, "model.dropout: .*less than 1"),
    ({"param_grid": {"learning_rate": ["fast"]}},
     "param_grid: train.learning_rate: .*valid number.*, got 'fast'"),
    ({"param_grid": {"num_layers": [0]}}, "param_grid: model.num_layers: .*greater than or"),
    ({"data": {"source": "parquet"}}, "needs data.file_path"),
    ({"file_path": "ticks.bin"}, "cannot tell the format"),
    ([1, 2], "expected a mapping"),
    ({"data": {"alpha": "median"}}, r"data.alpha: .* one of \('tlob',\), got 'median'"),
    ({"data": {"alpha": [0.1]}}, "data.alpha lists 1 values for 2 horizons"),
    ({"data": {"alpha": [0.1, -1]}}, r"data.alpha: .*greater than or equal to 0.*got \[0.1, -1\]"),
    ({"data": {"alpha": "1e-3x"}}, "data.alpha: .*one per horizon"),
    ({"data": {"val_fraction": -0.1}}, "data.val_fraction: .*greater than or equal to 0"),
    ({"data": {"val_fraction": 0.5}}, "data.val_fraction: .*less than 0.5"),
    ({"data": {"test_fraction": 0}}, "data.test_fraction: .*greater than 0"),
    ({"train": {"max_minutes": 0}}, "train.max_minutes: .*greater than 0"),
    ({"data": {"rolling_normalization": 0}}, "data.rolling_normalization: .*greater than or"),
    ({"data": {"rolling_normalization": 10**6}}, "data.rolling_normalization: .*less than or"),
    ({"data": {"rolling_normalization": 1.5}}, "data.rolling_normalization: .*valid integer"),
    ({"train": {"max_minutes": "soon"}}, "train.max_minutes: .*valid number"),
])
def test_bad_configs_get_clear_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw, "test.yaml")


def test_a_float_written_as_yaml_reads_it_is_a_float(tmp_path):
    # PyYAML reads 1e-3 (no dot) as the string '1e-3'; the schema takes it as the number.
    path = tmp_path / "lr.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n  grad_clip: null\n")
    cfg = load_config(path)
    assert cfg.train.learning_rate == 0.001 and cfg.train.grad_clip is None


def test_every_error_of_a_config_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        config_from_dict({"train": {"grad_clip": -1, "weight_decay": -1}})
    assert "train.grad_clip: " in str(error.value) and "train.weight_decay: " in str(error.value)


def test_replace_checks_the_schema_too(tiny_config):
    with pytest.raises(ValueError, match="grad_clip"):
        replace(tiny_config.train, grad_clip=-1.0)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match="no such config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)


def test_repo_default_config_loads():
    if not REPO_DEFAULT.exists():
        pytest.skip("configs/ is not beside this package (installed from a wheel)")
    cfg = load_config(REPO_DEFAULT)
    assert cfg.data.source == "simulator"


def test_alpha_is_a_number_a_list_per_horizon_or_the_tlob_rule():
    data = {"horizons": [10, 50, 100]}
    assert config_from_dict({"data": {**data, "alpha": 0}}).data.alpha == 0.0
    listed = config_from_dict({"data": {**data, "alpha": [1e-5, 2e-5, 3e-5]}})
    assert listed.data.alpha == (1e-5, 2e-5, 3e-5)
    assert config_from_dict(listed.to_dict()) == listed  # a list in YAML and checkpoints
    tlob = config_from_dict({"data": {**data, "alpha": "tlob"}, "train": {"max_minutes": 2.5}})
    assert tlob.data.alpha == "tlob" and tlob.train.max_minutes == 2.5
    assert config_from_dict(tlob.to_dict()) == tlob
    assert config_from_dict({"data": {"val_fraction": 0}}).data.val_fraction == 0


def test_class_weight_is_none_or_balanced():
    assert config_from_dict({}).train.class_weight is None
    balanced = config_from_dict({"train": {"class_weight": "balanced"}})
    assert balanced.train.class_weight == "balanced"
    assert config_from_dict(balanced.to_dict()) == balanced
    with pytest.raises(ValueError, match="train.class_weight: Input should be 'balanced'"):
        config_from_dict({"train": {"class_weight": "inverse"}})


def test_mirror_is_a_probability_and_recency_a_ratio_of_at_least_one():
    train = config_from_dict({}).train
    assert train.mirror == 0 and train.recency == 1
    cfg = config_from_dict({"train": {"mirror": 0.25, "recency": 4}})
    assert (cfg.train.mirror, cfg.train.recency) == (0.25, 4.0)
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="train.mirror: Input should be less than or equal to 1"):
        config_from_dict({"train": {"mirror": 1.5}})
    with pytest.raises(ValueError, match="train.recency: Input should be greater than or equal"):
        config_from_dict({"train": {"recency": 0.5}})


def test_seed_is_a_grid_key():
    cfg = config_from_dict({"param_grid": {"seed": [0, 1, 2]}})
    assert [(p.train.seed, p.train.out_dir) for p in cfg.grid()] == [
        (s, f"runs/default/seed={s}") for s in (0, 1, 2)]


def test_repo_amzn_config_is_the_protocol():
    path = REPO_DEFAULT.parent / "amzn.yaml"
    if not path.exists():
        pytest.skip("configs/ is not beside this package (installed from a wheel)")
    cfg = load_config(path)
    assert cfg.data.source == "lobster" and cfg.data.horizons[:3] == (10, 50, 100)
    assert cfg.data.alpha == "tlob" and cfg.data.test_fraction == 0.3
    assert [p.train.seed for p in cfg.grid()] == [0, 1, 2] and cfg.train.max_minutes <= 10

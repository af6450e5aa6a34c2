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
    ({"model": {"attention": "linear"}}, "model.attention must be one of"),
    ({"batch_size": 0}, "train.batch_size must be a positive int"),
    ({"data": {"source": "parquet"}}, "needs data.file_path"),
    ({"file_path": "ticks.bin"}, "cannot tell the format"),
    ([1, 2], "expected a mapping"),
    ({"data": {"alpha": "median"}}, r"data.alpha must be .* one of \('tlob',\)"),
    ({"data": {"alpha": [0.1]}}, "data.alpha lists 1 values for 2 horizons"),
    ({"data": {"alpha": [0.1, -1]}}, "data.alpha values must be numbers >= 0, got -1"),
    ({"data": {"alpha": "1e-3x"}}, "data.alpha must be"),
    ({"data": {"val_fraction": -0.1}}, r"data.val_fraction must be in \[0, 0.5\)"),
    ({"data": {"test_fraction": 0}}, r"data.test_fraction must be in \(0, 0.5\)"),
    ({"train": {"max_minutes": 0}}, "train.max_minutes must be a number > 0 or null"),
    ({"train": {"max_minutes": "5"}}, "train.max_minutes must be a number > 0 or null"),
])
def test_bad_configs_get_clear_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw, "test.yaml")


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


def test_seed_is_a_grid_key():
    cfg = config_from_dict({"param_grid": {"seed": [0, 1, 2]}})
    assert [(p.train.seed, p.train.out_dir) for p in cfg.grid()] == [
        (s, f"runs/default/seed={s}") for s in (0, 1, 2)]


def test_repo_amzn_config_is_the_protocol():
    path = REPO_DEFAULT.parent / "amzn.yaml"
    if not path.exists():
        pytest.skip("configs/ is not beside this package (installed from a wheel)")
    cfg = load_config(path)
    assert cfg.data.source == "lobster" and cfg.data.horizons == (10, 50, 100)
    assert cfg.data.alpha == "tlob" and cfg.data.test_fraction == 0.3
    assert [p.train.seed for p in cfg.grid()] == [0, 1, 2] and cfg.train.max_minutes <= 10

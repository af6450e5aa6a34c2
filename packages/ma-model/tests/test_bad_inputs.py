"""Bad input into ma-model, as a user would give it: mutated configs, data
a model must not read (crossed books, spikes, values past float32),
corrupt and foreign checkpoints. Each is refused with an error naming the
problem; what is accepted is kept as given (docs/reliability.md)."""

from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ma_features
from ma_model import (
    CheckpointError,
    DataConfig,
    ModelConfig,
    ModelInputs,
    TrainConfig,
    config_from_dict,
    fit,
    load_checkpoint,
    raw_columns,
)
from ma_model.evaluate import main as ma_eval
from ma_model.train import main as ma_train

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
KEYS = [(section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)
        if f.name != "features"]  # features: FeatureSpec's own tests
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**9, 10**9),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e-3", "fast", "", "2"]),
    st.text(max_size=6), st.lists(st.integers(-2, 70), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), value=JUNK)
def test_a_mutated_config_is_refused_naming_its_key_or_kept_as_given(key, value):
    section, name = key
    try:
        cfg = config_from_dict({section: {name: value}}, "mutated.yaml")
    except ValueError as e:
        assert str(e).startswith("mutated.yaml: ") and name in str(e), str(e)
        return
    kept = cfg.to_dict()[section][name]
    if isinstance(value, str) and not isinstance(kept, str):
        assert kept == float(value)  # a number written as text, read as the number
    else:
        assert kept == value
    assert config_from_dict(cfg.to_dict()) == cfg


def test_a_depth_past_the_bound_is_refused_before_its_dilations_are_built():
    # Default dilations follow num_layers: a billion layers once built a billion of them.
    with pytest.raises(ValueError, match=r"mutated.yaml: model.num_layers: .* less than or "
                                         r"equal to 64, got 1000000000"):
        config_from_dict({"model": {"num_layers": 10**9}}, "mutated.yaml")


def _ticks() -> ma_features.Ticks:
    return ma_features.simulate(3000, levels=5, seed=0)


def _raw(ticks: ma_features.Ticks) -> dict[str, torch.Tensor]:
    return raw_columns(ticks, ma_features.FeatureSpec.model_inputs())


def test_a_spike_in_the_training_rows_is_refused_before_it_swamps_the_statistics():
    ticks = _ticks()
    ticks.bid_size[700, 0] = 1e20  # finite, valid to the readers, ofi becomes ~1e20
    raw = _raw(ticks)
    with pytest.raises(ValueError, match=r"tick row 700: input 'ofi' = 1e\+20 is a spike"):
        ModelInputs.fit(ma_features.FeatureSpec.model_inputs(), raw["x"], raw["dt"])


def test_an_input_beyond_the_limit_after_training_is_refused_naming_row_and_column():
    raw = _raw(_ticks())
    spec = ma_features.FeatureSpec.model_inputs()
    inputs = ModelInputs.fit(spec, raw["x"][:2000], raw["dt"][:2000])
    z, _ = inputs.normalize(raw["x"], raw["dt"])  # clean rows pass, all of them
    assert z.shape == raw["x"].shape and torch.isfinite(z).all()
    x = raw["x"].clone()
    x[2500, spec.names.index("spread")] = 1e30
    with pytest.raises(ValueError, match=r"tick row 2500: input 'spread' = 1e\+30 is beyond"):
        inputs.normalize(x, raw["dt"])
    x[2400, 0] = float("nan")
    with pytest.raises(ValueError, match="tick row 2400: input 'spread' = nan is not finite"):
        inputs.normalize(x, raw["dt"])
    dt = raw["dt"].clone()
    dt[2600] = 1e300
    with pytest.raises(ValueError, match="tick row 2600: input 'inter_arrival'"):
        inputs.normalize(raw["x"], dt)


@pytest.fixture
def csv_config(tiny_config, tmp_path):
    """A tiny config on a CSV of simulated ticks; returns (ticks, write)."""
    ticks = ma_features.simulate(tiny_config.data.events, levels=10, seed=0)

    def write(changed: ma_features.Ticks) -> str:
        data = tmp_path / "ticks.csv"
        ma_features.write_csv(changed, data)
        config = tmp_path / "csv.yaml"
        config.write_text(f"data:\n  file_path: {data}\n  sequence_length: 16\n"
                          f"  horizons: [5, 20]\ntrain:\n  out_dir: {tmp_path / 'run'}\n")
        return str(config)
    return ticks, write


def test_ma_train_refuses_a_crossed_book_naming_its_line(csv_config, capsys):
    ticks, write = csv_config
    ticks.bid_price[100, 0] = ticks.ask_price[100, 0] + 0.01
    with pytest.raises(SystemExit) as e:
        ma_train(["--config", write(ticks)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "crossed book" in err and "line 102" in err, err


def test_ma_train_refuses_a_huge_finite_value_naming_its_row(csv_config, capsys):
    ticks, write = csv_config
    ticks.ask_size[5800, 0] = 1e20  # in the test split: the statistics never saw it
    with pytest.raises(SystemExit) as e:
        ma_train(["--config", write(ticks)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "tick row 5800: input 'ofi'" in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from conftest import TINY
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["train"].update(epochs=1, out_dir=str(tmp_path_factory.mktemp("run")))
    return fit(config_from_dict(raw), log=lambda *_: None)["best"]


def test_ma_eval_on_nan_weights_prints_no_metrics(checkpoint, tmp_path, capsys):
    ckpt = torch.load(checkpoint, weights_only=True)
    for w in ckpt["model"].values():
        if w.is_floating_point():
            w.fill_(float("nan"))
    broken = tmp_path / "nan.pt"
    torch.save(ckpt, broken)
    with pytest.raises(SystemExit) as e:
        ma_eval(["--checkpoint", str(broken)])
    out = capsys.readouterr()
    assert e.value.code == 2 and "hold NaN or infinite values" in out.err
    assert "MA-Transformer" not in out.out and "|" not in out.out


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_a_truncated_checkpoint_is_a_checkpoint_error(checkpoint, tmp_path, cut):
    data = Path(checkpoint).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload, message", [
    ([1, 2, 3], "not an ma-model-checkpoint"),
    ({"format": "ma-model-checkpoint", "format_version": 99}, "format version 99 is newer"),
    ({"state_dict": {}}, "not an ma-model-checkpoint"),
])
def test_foreign_checkpoints_are_named(tmp_path, payload, message):
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_the_schema_holds_for_replace_too():
    with pytest.raises(ValueError, match="min_lr_ratio"):
        replace(TrainConfig(), min_lr_ratio=-2.0)

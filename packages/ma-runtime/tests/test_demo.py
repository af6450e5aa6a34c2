from pathlib import Path

import pytest

from ma_runtime import demo

REPO = Path(__file__).resolve().parents[3]
REPO_CONFIG = REPO / "configs" / "demo.yaml"
AMZN_DAY = REPO / "data" / "lobster" / "AMZN_2012-06-21_34200000_57600000_message_1.csv"


def test_repo_config_states_the_builtin_defaults():
    if not REPO_CONFIG.exists():
        pytest.skip("configs/ is not beside this package (installed from a wheel)")
    assert vars(demo.parse_args(["--config", str(REPO_CONFIG)])) == {
        **vars(demo.parse_args([])),
        "config": REPO_CONFIG,
    }


def test_flags_override_the_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("events: 5000\nreplay: 10\n")
    args = demo.parse_args(["--config", str(config), "--replay", "20"])
    assert (args.events, args.replay) == (5000, 20)


def test_unknown_config_key_is_refused(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("evnts: 5000\n")
    with pytest.raises(SystemExit):
        demo.parse_args(["--config", str(config)])
    assert "unknown keys ['evnts']" in capsys.readouterr().err


def test_replay_must_fit_in_the_events(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--events", "100", "--replay", "100"])
    assert "--replay must be smaller" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--events", "0"], "--events must be at least 1"),
    (["--replay", "0"], "--replay must be at least 1"),
    (["--ticks", "no/such.csv"], "--ticks no/such.csv: no such file"),
])
def test_bad_flags_name_themselves(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(argv)
    assert message in capsys.readouterr().err


def test_demo_streams_a_real_day(tmp_path):
    """The first 6000 events of the AMZN day, streamed raw through the engine."""
    if not AMZN_DAY.exists():
        pytest.skip("data/ is not beside this package (installed from a wheel)")
    import ma_features

    ticks, _ = ma_features.read_ticks(AMZN_DAY)
    ma_features.write_parquet(ticks[:6000], tmp_path / "amzn.parquet")
    result = demo.run(events=1, seed=0, device="cpu", replay=100, out_dir=str(tmp_path),
                      path=tmp_path / "amzn.parquet")
    assert result["events"] == 6000
    assert result["stream_equals_batch"] and result["model_stream"]["stream_equals_batch"]


def test_demo_runs_end_to_end_and_stream_equals_batch(capsys, tmp_path):
    result = demo.run(events=5000, seed=1, device="cpu", replay=100, out_dir=str(tmp_path))
    assert result["events"] == 5000
    assert result["stream_equals_batch"]
    assert result["latency"].count == 100
    assert 0 < result["train"]["val_accuracy"] <= 1 and result["train"]["train_loss"] > 0
    assert result["model_stream"]["stream_equals_batch"]
    assert result["model_stream"]["latency"].count == 100
    out = capsys.readouterr().out
    assert "validation accuracy" in out
    # The checkpoint stays for ma-eval, and the demo says where.
    assert (tmp_path / "best.pt").is_file() and f"checkpoint: {tmp_path / 'best.pt'}" in out


@pytest.mark.gpu
def test_demo_on_gpu(tmp_path):
    result = demo.run(events=5000, seed=1, device="cuda", replay=100, out_dir=str(tmp_path))
    assert result["stream_equals_batch"] and result["model_stream"]["stream_equals_batch"]

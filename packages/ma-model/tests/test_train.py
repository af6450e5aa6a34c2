import pytest

from ma_model.train import main


def test_cli_reports_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    with pytest.raises(SystemExit) as e:
        main(["--config", str(bad)])
    assert e.value.code == 2 and "unknown key 'epoch'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--out-dir", str(tmp_path / "none"), "--resume"])
    assert "no such checkpoint" in capsys.readouterr().err
    for name in ("ticks.parquet", "ticks.csv", "AMZN_message_1.csv"):  # a missing data file
        config = tmp_path / "missing.yaml"
        config.write_text(f"data:\n  file_path: {tmp_path / name}\n")
        with pytest.raises(SystemExit) as e:
            main(["--config", str(config)])
        assert e.value.code == 2 and "no such tick file" in capsys.readouterr().err

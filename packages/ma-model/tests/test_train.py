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


def test_one_ma_train_trains_every_seed_of_the_grid(tiny_config, tmp_path, capsys):
    import yaml

    raw = tiny_config.to_dict()
    raw["train"].update(epochs=1, out_dir=str(tmp_path / "seeds"))
    raw["param_grid"] = {"seed": [0, 1]}
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(raw))
    main(["--config", str(path)])
    printed = capsys.readouterr().out
    for seed in (0, 1):
        assert f"grid: {tmp_path}/seeds/seed={seed}: best val loss" in printed
        assert (tmp_path / "seeds" / f"seed={seed}" / "best.pt").is_file()

import importlib.util
import json

import pytest
import torch

from ma_model import fit, load_checkpoint, logistic_regression
from ma_model.evaluate import main, scored_rows

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_ma_eval_end_to_end_on_a_tiny_checkpoint(tiny_config, tmp_path, capsys):
    fit(tiny_config, log=lambda *_: None)
    best = f"{tiny_config.train.out_dir}/best.pt"
    out = tmp_path / "metrics.json"
    main(["--checkpoint", best, "--baselines", "--json", str(out), "--plots",
          str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["horizons"] == [5, 20]
    for name in ("model", "logistic", "dense"):
        assert len(results[name]) == 2
        for report in results[name]:
            total = sum(map(sum, report["confusion"]))
            assert total > 0 and 0 <= report["accuracy"] <= 1 and -1 <= report["mcc"] <= 1
            assert report["accuracy"] == pytest.approx(
                sum(report["confusion"][i][i] for i in range(3)) / total)
    assert "| MA-Transformer | 5 |" in printed and "| logistic regression | 20 |" in printed
    assert results["history"] == load_checkpoint(best)["history"]
    if HAS_MATPLOTLIB:
        assert (tmp_path / "plots" / "training_curves.png").is_file()
    else:
        assert "plots skipped: matplotlib is not installed" in printed


def test_ma_eval_refuses_a_foreign_file(tmp_path, capsys):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(path)])
    assert e.value.code == 2 and "not an ma-model-checkpoint" in capsys.readouterr().err


def test_every_model_is_scored_on_the_same_rows(tiny_config):
    from ma_model import load_splits

    splits = load_splits(tiny_config.data)
    predict = logistic_regression(splits.train, steps=20)
    pred, labels = scored_rows(splits.test, 16, predict)
    n = len(splits.test.x)
    windows = (n - 16) // 8 + 1
    assert pred.shape == labels.shape == (windows * 8, 2)
    # labels are those of rows 8 .. of the split, in order
    assert torch.equal(labels[:8], splits.test.labels[8:16])

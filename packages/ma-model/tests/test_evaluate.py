import importlib.util
import json
from dataclasses import replace

import pytest
import torch

from ma_model import fit, load_checkpoint, scoring
from ma_model.decision import apply_offsets, fit_offsets, log_probabilities
from ma_model.evaluate import _score_checkpoint, evaluate_runs, main
from ma_model.tables import summary_table

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_ma_eval_end_to_end_on_a_tiny_checkpoint(tiny_config, tmp_path, capsys):
    fit(tiny_config, log=lambda *_: None)
    best = f"{tiny_config.train.out_dir}/best.pt"
    out = tmp_path / "metrics.json"
    main(["--checkpoint", best, "--baselines", "--json", str(out), "--plots",
          str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["horizons"] == [5, 20] and results["seeds"] == [0]
    run = results["runs"][0]
    for name in ("model", "majority", "logistic", "gbt", "dense"):
        assert len(run[name]) == 2
        for h, report in enumerate(run[name]):
            total = sum(map(sum, report["confusion"]))
            assert total > 0 and 0 <= report["accuracy"] <= 1 and -1 <= report["mcc"] <= 1
            assert report["accuracy"] == pytest.approx(
                sum(report["confusion"][i][i] for i in range(3)) / total)
            summary = results["summary"][name]["macro_f1"][h]
            assert summary == {"mean": report["macro_f1"], "std": 0.0,
                               "values": [report["macro_f1"]]}
    # The majority baseline predicts one class: one column of its confusion matrix.
    for report in run["majority"]:
        assert sum(1 for j in range(3) if any(row[j] for row in report["confusion"])) == 1
    assert "| MA-Transformer | 5 |" in printed and "| gradient-boosted trees | 20 |" in printed
    assert run["history"] == load_checkpoint(best)["history"]
    if HAS_MATPLOTLIB:
        assert (tmp_path / "plots" / "training_curves.png").is_file()
        assert (tmp_path / "plots" / "macro_f1_by_horizon.png").is_file()
    else:
        assert "plots skipped: matplotlib is not installed" in printed


def fit_seeds(cfg, tmp_path, seeds) -> list[str]:
    """The best checkpoint of ``cfg`` trained with each of ``seeds``."""
    paths = []
    for seed in seeds:
        out = tmp_path / f"s{seed}"
        fit(replace(cfg, train=replace(cfg.train, seed=seed, out_dir=str(out))),
            log=lambda *_: None)
        paths.append(str(out / "best.pt"))
    return paths


def test_several_seeds_give_mean_and_spread(tiny_config, tmp_path, capsys):
    paths = fit_seeds(tiny_config, tmp_path, (0, 1))
    results = evaluate_runs(paths, baselines=("majority",), log=lambda *_: None)
    assert results["seeds"] == [0, 1]
    f1 = [[run["model"][h]["macro_f1"] for run in results["runs"]] for h in range(2)]
    for h in range(2):
        s = results["summary"]["model"]["macro_f1"][h]
        assert s["values"] == f1[h] and s["mean"] == pytest.approx(sum(f1[h]) / 2)
        assert s["std"] == pytest.approx(abs(f1[h][0] - f1[h][1]) / 2 ** 0.5)
    assert "±" in summary_table(results) and "majority class" in summary_table(results)
    # The ensemble: the mean of the two seeds' probabilities, a row of its own.
    assert set(results["ensemble"]) == {"model", "majority"}
    assert results["ensemble"]["majority"] == results["runs"][0]["majority"]
    assert len(results["ensemble"]["model"]) == 2
    assert "| MA-Transformer, ensemble of 2 runs | 5 |" in summary_table(results)


def test_baselines_flag_names_a_typo(tiny_config, capsys):
    fit(tiny_config, log=lambda *_: None)
    best = f"{tiny_config.train.out_dir}/best.pt"
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", best, "--baselines", "gbt,xgboost"])
    assert e.value.code == 2 and "--baselines: unknown ['xgboost']" in capsys.readouterr().err


def test_ma_eval_refuses_a_foreign_file(tmp_path, capsys):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(path)])
    assert e.value.code == 2 and "not an ma-model-checkpoint" in capsys.readouterr().err


def test_ma_eval_segments_table(tiny_config, capsys):
    fit(tiny_config, log=lambda *_: None)
    main(["--checkpoint", f"{tiny_config.train.out_dir}/best.pt", "--baselines", "majority",
          "--segments", "3"])
    printed = capsys.readouterr().out
    assert "3 consecutive segments of the test split" in printed
    assert "| MA-Transformer | 5 | 3 |" in printed and "| majority class | 20 | 3 |" in printed


def test_ma_eval_walk_forward_retrains_each_checkpoints_config(tiny_config, capsys, tmp_path):
    fit(tiny_config, log=lambda *_: None)
    best = f"{tiny_config.train.out_dir}/best.pt"
    out = tmp_path / "wf.json"
    main(["--checkpoint", best, "--walk-forward", "2", "--baselines", "majority",
          "--json", str(out)])
    printed = capsys.readouterr().out
    assert "walk-forward over 2 folds of the test region" in printed
    assert "| MA-Transformer | 5 | 2 |" in printed and "| majority class | 20 | 2 |" in printed
    results = json.loads(out.read_text())
    assert results["folds"] == 2 and len(results["runs"][0]["folds"]) == 2
    assert (tmp_path / "run" / "walk-forward" / "fold=1" / "best.pt").is_file()
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", best, "--walk-forward", "2", "--segments", "3"])
    assert e.value.code == 2 and "--walk-forward scores its region's folds" in \
        capsys.readouterr().err
    main(["--checkpoint", best, "--walk-forward", "1", "--split", "val"])
    assert "walk-forward over 1 folds of the val region" in capsys.readouterr().out
    assert (tmp_path / "run" / "walk-forward-val" / "fold=0" / "best.pt").is_file()


def test_decision_rule_validation_fits_each_model_on_its_validation_rows(tiny_config, tmp_path,
                                                                           capsys):
    paths = fit_seeds(tiny_config, tmp_path, (0, 1))
    quiet = {"baselines": ("majority", "logistic"), "log": lambda *_: None}
    argmax = evaluate_runs(paths, **quiet)
    rule = evaluate_runs(paths, rule="validation", **quiet)
    assert argmax["decision_rule"] == "argmax" and rule["decision_rule"] == "validation"
    first, scored, val = _score_checkpoint(paths[0], "test", ("majority", "logistic"),
                                           lambda *_: None, 1, "validation")
    assert set(first["offsets"]) == set(val) == {"model", "logistic"}  # not the majority
    for name in ("model", "logistic"):
        # The offsets are those fitted on the model's validation rows, applied to its test rows.
        offsets = fit_offsets(log_probabilities(val[name][0]), val[name][1])
        assert first["offsets"][name] == offsets[:, [0, 2]].tolist()
        moved = apply_offsets(scored[name][0], offsets)
        assert first[name] == scoring.report(moved, scored[name][1])
        assert rule["runs"][0][name] == first[name]
        assert first["argmax_macro_f1"][name] == [
            r["macro_f1"] for r in argmax["runs"][0][name]]
    assert rule["runs"][0]["majority"] == argmax["runs"][0]["majority"]
    assert rule["ensemble"]["majority"] == argmax["ensemble"]["majority"]
    main(["--checkpoint", paths[0], "--decision-rule", "validation"])
    assert "decision rule validation" in capsys.readouterr().out
    for bad in (["--split", "val"], ["--walk-forward", "2"]):
        with pytest.raises(SystemExit) as e:
            main(["--checkpoint", paths[0], "--decision-rule", "validation", *bad])
        assert e.value.code == 2 and "--decision-rule" in capsys.readouterr().err

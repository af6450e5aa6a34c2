import pytest

from ma_model.tables import as_runs, summarize, summary_table, walk_forward_table


def _reports(*f1):
    return [{"accuracy": 0.5, "macro_f1": v, "mcc": 0.1} for v in f1]


def test_summarize_gives_mean_and_sample_spread_per_model_and_horizon():
    runs = [{"model": _reports(0.4, 0.6), "gbt": _reports(0.3, 0.3)},
            {"model": _reports(0.6, 0.6), "gbt": _reports(0.5, 0.3)}]
    summary = summarize(runs)
    assert list(summary) == ["model", "gbt"]
    first = summary["model"]["macro_f1"][0]
    assert first["mean"] == pytest.approx(0.5) and first["values"] == [0.4, 0.6]
    assert first["std"] == pytest.approx(0.2 / 2 ** 0.5)
    assert summary["gbt"]["macro_f1"][1]["std"] == 0
    assert summarize(runs[:1])["model"]["macro_f1"][0]["std"] == 0.0


def test_a_single_result_reads_as_one_run():
    result = {"model": _reports(0.4, 0.6), "horizons": [10, 50]}
    assert summary_table(result) == summary_table(as_runs(result))
    assert "| MA-Transformer | 50 | 0.5000 | 0.6000 | 0.1000 |" in summary_table(result)


def test_walk_forward_table_lists_folds_mean_spread_and_worst():
    folds = [{"model": _reports(0.4)}, {"model": _reports(0.6)}, {"model": _reports(0.5)}]
    table = walk_forward_table({"summary": summarize(folds), "horizons": [10]})
    assert "| MA-Transformer | 10 | 3 | 0.5000 | 0.1000 | 0.4000 |" in table

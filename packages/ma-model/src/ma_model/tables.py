"""Markdown tables of ma-eval's results (:func:`ma_model.evaluate.evaluate_runs`)."""

from __future__ import annotations

import statistics

from .contenders import NAMES

METRICS = ("accuracy", "macro_f1", "mcc")


def summarize(runs: list[dict]) -> dict:
    """model -> metric -> per-horizon ``{"mean", "std", "values"}`` over
    ``runs`` (each ``{model name: [per-horizon reports]}``; std is the sample
    standard deviation, 0 for one run), for the models of the first run."""
    summary = {}
    for name in (n for n in NAMES if n in runs[0]):
        summary[name] = {}
        for metric in METRICS:
            per_h = [[run[name][h][metric] for run in runs] for h in range(len(runs[0][name]))]
            summary[name][metric] = [
                {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                 "values": v} for v in per_h]
    return summary


def summary_table(results: dict) -> str:
    """Markdown table: model x horizon -> accuracy, macro F1, MCC; mean ±
    spread over the runs of :func:`ma_model.evaluate.evaluate_runs` (a bare
    :func:`ma_model.evaluate.evaluate_checkpoint` result counts as one run),
    then each model's ensemble of the runs (the mean of their probabilities)
    where there are several."""
    if "summary" not in results:
        results = as_runs(results)
    lines = ["| model | horizon | accuracy | macro F1 | MCC |", "|---|---|---|---|---|"]
    several = len(results["runs"]) > 1
    for key, metrics in results["summary"].items():
        for h, k in enumerate(results["horizons"]):
            cells = [f"{m[h]['mean']:.4f}" + (f" ± {m[h]['std']:.4f}" if several else "")
                     for m in (metrics[x] for x in METRICS)]
            lines.append(f"| {NAMES[key]} | {k} | {' | '.join(cells)} |")
    for key, reports in results.get("ensemble", {}).items():
        for k, r in zip(results["horizons"], reports, strict=True):
            cells = " | ".join(f"{r[x]:.4f}" for x in METRICS)
            lines.append(f"| {NAMES[key]}, ensemble of {len(results['runs'])} runs | {k} | "
                         f"{cells} |")
    return "\n".join(lines)


def segment_table(results: dict) -> str:
    """Markdown table of :func:`ma_model.scoring.segment_f1` over every run's segments: per
    model and horizon the mean, spread and worst segment's macro F1."""
    lines = ["| model | horizon | segments | mean macro F1 | sd | worst |",
             "|---|---|---|---|---|---|"]
    for name in NAMES:
        per_run = [run["segments"][name] for run in results["runs"] if name in run["segments"]]
        for h, k in enumerate(results["horizons"]):
            values = [seg[h] for segs in per_run for seg in segs]
            if len(values) > 1:
                lines.append(f"| {NAMES[name]} | {k} | {len(values)} | "
                             f"{statistics.fmean(values):.4f} | {statistics.stdev(values):.4f} | "
                             f"{min(values):.4f} |")
    return "\n".join(lines)


def walk_forward_table(results: dict) -> str:
    """Markdown table of :func:`ma_model.evaluate.walk_forward_runs`: per model
    and horizon the macro F1's mean, spread and worst over every fold of
    every run (each fold scored by models trained on the rows before it)."""
    lines = ["| model | horizon | folds | mean macro F1 | sd | worst |",
             "|---|---|---|---|---|---|"]
    for name, metrics in results["summary"].items():
        for h, k in enumerate(results["horizons"]):
            f1 = metrics["macro_f1"][h]
            lines.append(f"| {NAMES[name]} | {k} | {len(f1['values'])} | {f1['mean']:.4f} | "
                         f"{f1['std']:.4f} | {min(f1['values']):.4f} |")
    return "\n".join(lines)


def as_runs(result: dict) -> dict:
    """One :func:`ma_model.evaluate.evaluate_checkpoint` result in the shape of several runs'."""
    return {"runs": [result], "summary": summarize([result]), "horizons": result["horizons"]}


def class_report(r: dict) -> str:
    rows = [f"{'class':>11} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, c in zip(("down", "stationary", "up"), r["per_class"], strict=True):
        rows.append(f"{name:>11} {c['precision']:9.4f} {c['recall']:7.4f} {c['f1']:7.4f} "
                    f"{c['support']:8d}")
    rows.append(f"confusion (rows true, columns predicted): {r['confusion']}")
    return "\n".join(rows)

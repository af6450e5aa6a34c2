"""The ``ma-eval`` CLI: ``ma-eval --checkpoint runs/default/best.pt [--baselines]``.

Rebuilds the checkpoint's splits (its data config, its train-fitted
normalisation) and scores a split per horizon, every model on the same rows
(:mod:`ma_model.scoring`). Baselines (:mod:`ma_model.contenders`) train on
the same splits with the same seed. Several checkpoints (one per seed) give
the mean and spread of every metric. ``--walk-forward N`` instead retrains
each checkpoint's config on N folds of the test region
(:mod:`ma_model.walk_forward`). ``--decision-rule validation`` decides each
model's classes with offsets fitted on its validation predictions
(:mod:`ma_model.decision`) instead of argmax. The tables are
:mod:`ma_model.tables`', the plots :mod:`ma_model.plots`'.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from .checkpoint import load_checkpoint
from .contenders import BASELINES, NAMES, baseline_names, fit_baseline
from .data import Splits, load_splits
from .decision import RULES, validation_rule
from .distributed import resolve_device
from .plots import plot
from .restore import config_of, inputs_of, model_of
from .scoring import ensemble, network_predictor, report, scored_rows, segment_f1
from .tables import class_report, segment_table, summarize, summary_table, walk_forward_table
from .walk_forward import walk_forward


def evaluate_checkpoint(path: str | Path, split: str = "test",
                        baselines: bool | tuple[str, ...] = (), log=print,
                        segments: int = 1, rule: str = "argmax") -> dict:
    """``{"model": [per-horizon reports], <baseline>: ..., "alpha", "horizons",
    "history", "seed", "decision_rule"}`` on ``split``; ``baselines``: names of
    :data:`~ma_model.contenders.BASELINES` (True: all of them). ``segments`` > 1 adds
    ``"segments": {model: macro F1 [segment][horizon]}`` (:func:`~ma_model.scoring.segment_f1`).
    ``rule`` ``"validation"`` (test split only) decides every model but the majority class
    with offsets fitted on its validation predictions (:mod:`ma_model.decision`) and adds
    ``"offsets": {model: [down, up] per horizon}`` and, for a paired comparison,
    ``"argmax_macro_f1": {model: macro F1 per horizon of the same predictions under argmax}``."""
    return _score_checkpoint(path, split, baselines, log, segments, rule)[0]


def _score_checkpoint(path, split, baselines, log, segments,
                      rule="argmax") -> tuple[dict, dict, dict]:
    """:func:`evaluate_checkpoint`'s results and each model's
    :func:`~ma_model.scoring.scored_rows` (probabilities and labels, before
    any decision rule) on the split and, with ``rule`` ``"validation"``, on
    the validation split."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if rule not in RULES:
        raise ValueError(f"decision rule must be one of {list(RULES)}, got {rule!r}")
    if rule == "validation" and split != "test":
        raise ValueError("--decision-rule validation is fitted on the validation split: it "
                         "scores the test split only")
    baselines = BASELINES if baselines is True else tuple(baselines or ())
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    model = model_of(ckpt, path)
    splits: Splits = load_splits(cfg.data, inputs_of(ckpt, path).state_dict())
    if (split == "val" or rule == "validation") and not len(splits.val.x):
        raise ValueError(f"{path}: its run has no validation split (data.val_fraction 0)")
    device = resolve_device(cfg.train.device)
    arrays, length = getattr(splits, split), cfg.data.sequence_length
    results: dict = {"segments": {}, "decision_rule": rule}
    scored, val_scored = {}, {}
    predictors = {"model": network_predictor(model.to(device), device)}
    for name in baselines:
        log(f"baseline: {NAMES[name]} (seed {cfg.train.seed})")
        predictors[name] = fit_baseline(name, cfg, splits, Path(path).parent / "dense", device,
                                        log)
    for name, predict in predictors.items():
        scored[name] = probabilities, labels = scored_rows(arrays, length, predict)
        if rule == "validation" and name != "majority":  # the majority class has no boundary
            val_scored[name] = scored_rows(splits.val, length, predict)
            probabilities, offsets = validation_rule(val_scored[name], probabilities)
            results.setdefault("offsets", {})[name] = offsets[:, [0, 2]].tolist()
            results.setdefault("argmax_macro_f1", {})[name] = [  # the same predictions, argmax
                r["macro_f1"] for r in report(*scored[name])]
        results[name] = report(probabilities, labels)
        if segments > 1:
            results["segments"][name] = segment_f1(probabilities, labels, segments)
    results["history"] = ckpt["history"]
    results["horizons"] = list(cfg.data.horizons)
    results["alpha"] = list(splits.train.alpha)
    results["seed"] = cfg.train.seed
    return results, scored, val_scored


def evaluate_runs(paths: list[str | Path], split: str = "test",
                  baselines: bool | tuple[str, ...] = (), log=print,
                  segments: int = 1, rule: str = "argmax") -> dict:
    """:func:`evaluate_checkpoint` of each checkpoint (one per seed, same
    data config) and ``summary``: model -> metric -> per-horizon mean, spread
    (sample standard deviation, 0 for one run) and the values; with several
    checkpoints also ``ensemble``: model -> per-horizon reports of the mean
    of the runs' probabilities (:func:`~ma_model.scoring.ensemble`; with
    ``rule`` ``"validation"`` its offsets fitted on the mean of their
    validation probabilities)."""
    scored = [_score_checkpoint(p, split, baselines, log, segments, rule) for p in paths]
    runs = [run for run, _, _ in scored]
    horizons = runs[0]["horizons"]
    for path, run in zip(paths, runs, strict=True):
        if run["horizons"] != horizons or run["alpha"] != runs[0]["alpha"]:
            raise ValueError(f"{path}: its horizons/alpha {run['horizons']}/{run['alpha']} differ "
                             f"from {paths[0]}'s: the runs must share one data config")
    results = {"runs": runs, "summary": summarize(runs), "horizons": horizons,
               "alpha": runs[0]["alpha"], "seeds": [run["seed"] for run in runs],
               "decision_rule": rule}
    if len(runs) > 1:
        results["ensemble"] = {
            name: ensemble([rows[name] for _, rows, _ in scored],
                           [val[name] for _, _, val in scored] if name in scored[0][2] else None)
            for name in scored[0][1]}
    return results


def walk_forward_runs(paths: list[str | Path], folds: int,
                      baselines: bool | tuple[str, ...] = (), log=print,
                      region: str = "test") -> dict:
    """:func:`~ma_model.walk_forward.walk_forward` over ``region`` of each
    checkpoint's config (its seed; its weights are not used), each under
    ``<checkpoint folder>/walk-forward`` (``walk-forward-val`` over the
    validation region), and the mean and spread over every fold of every run."""
    baselines = BASELINES if baselines is True else tuple(baselines or ())
    runs = []
    for path in paths:
        cfg = config_of(load_checkpoint(path), path)
        folder = "walk-forward" if region == "test" else f"walk-forward-{region}"
        out_dir = str(Path(path).parent / folder)
        cfg = replace(cfg, train=replace(cfg.train, out_dir=out_dir))
        runs.append(walk_forward(cfg, folds, baselines, log, region))
    folds_all = [fold for run in runs for fold in run["folds"]]
    return {"runs": runs, "summary": summarize(folds_all), "horizons": runs[0]["horizons"],
            "seeds": [run["seed"] for run in runs], "folds": folds, "region": region}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ma-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, nargs="+",
                        help="one checkpoint, or one per seed of the same config")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--baselines", nargs="?", const="all", default="",
                        help=f"'all' (the default when given bare) or a comma-separated subset "
                             f"of {','.join(BASELINES)}")
    parser.add_argument("--segments", type=int, default=1,
                        help="also score N consecutive segments of the split (no retraining): "
                             "mean, spread and worst macro F1")
    parser.add_argument("--walk-forward", type=int, metavar="N",
                        help="instead, retrain each checkpoint's config (and the baselines) on "
                             "the rows before each of N consecutive folds of the test region "
                             "(with --split val: of the validation region, reading nothing "
                             "after it) and score it on that fold")
    parser.add_argument("--decision-rule", choices=RULES, default="argmax",
                        help="how probabilities become classes: 'argmax' (the default), or "
                             "'validation': per model and horizon, offsets added to the "
                             "log-probabilities of down and up (stationary's 0, each in -2..2) "
                             "that maximise macro F1 on that model's validation predictions, "
                             "then applied to its test predictions (the majority class is "
                             "unaffected; test split only)")
    parser.add_argument("--plots", type=Path, help="write PNG plots into this folder")
    parser.add_argument("--json", type=Path, help="write every metric as JSON here")
    args = parser.parse_args(argv)
    try:
        baselines = baseline_names(args.baselines) if args.baselines else ()
        if args.walk_forward is not None:
            if args.segments != 1 or args.plots or args.decision_rule != "argmax":
                raise ValueError("--walk-forward scores its region's folds: it takes no "
                                 "--segments, --plots or --decision-rule")
            results = walk_forward_runs(args.checkpoint, args.walk_forward, baselines,
                                        region=args.split)
        else:
            results = evaluate_runs(args.checkpoint, args.split, baselines,
                                    segments=args.segments, rule=args.decision_rule)
    except ValueError as e:  # CheckpointError and config/data errors
        parser.exit(2, f"ma-eval: error: {e}\n")
    paths = ", ".join(map(str, args.checkpoint))
    if args.walk_forward is not None:
        print(f"\nwalk-forward over {args.walk_forward} folds of the {args.split} region, "
              f"retrained per fold, configs of {paths} (seeds {results['seeds']})\n")
        print(walk_forward_table(results))
    else:
        _print_evaluation(results, args, paths)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


def _print_evaluation(results: dict, args: argparse.Namespace, paths: str) -> None:
    print(f"\n{args.split} split of {paths} (seeds {results['seeds']}, alpha per horizon "
          f"{[f'{a:.3g}' for a in results['alpha']]}, decision rule {args.decision_rule})\n")
    print(summary_table(results))
    if args.segments > 1:
        print(f"\n{args.segments} consecutive segments of the {args.split} split, every run\n")
        print(segment_table(results))
    first = results["runs"][0]
    for name, offsets in first.get("offsets", {}).items():
        print(f"{name}, seed {first['seed']}: offsets (down, up) per horizon fitted on the "
              f"validation split: {[(round(d, 2), round(u, 2)) for d, u in offsets]}")
    for k, r in zip(results["horizons"], first["model"], strict=True):
        print(f"\nMA-Transformer, horizon {k}, seed {first['seed']}\n{class_report(r)}")
    if args.plots:
        for path in plot(results, args.plots):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

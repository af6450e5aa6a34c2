"""The main job, end to end on an embedded default: simulated ticks (or a
recorded day, ``--ticks``), the model's features in batch and tick by tick,
a short training, and a streaming replay of unseen raw ticks through the
engine with its latency.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

import ma_features
import ma_model

from .engine import StreamEngine, auto_device
from .latency import measure_latency


def _stage(title: str) -> None:
    print(f"\n== {title}")


# Training sees at most this many ticks, so the stage takes seconds to a minute on a CPU.
TRAIN_TICKS = 60_000


def demo_config(device: str, out_dir: str) -> ma_model.Config:
    # Head dim 32: the CUDA attention kernels take 32, 64 or 128.
    return ma_model.config_from_dict(
        {
            "model": {
                "model_dim": 64,
                "num_heads": 2,
                "num_layers": 2,
                "window": 16,
                "dilations": [1, 2],
                "mlp_ratio": 2,
            },
            "data": {"sequence_length": 32, "horizons": [10, 50]},
            "train": {
                "batch_size": 32,
                "epochs": 2,
                "stride": 32,
                "device": device,
                "out_dir": out_dir,
            },
        }
    )


def train(ticks: ma_features.Ticks, config: ma_model.Config) -> dict:
    """Two epochs of a small MA-Transformer on ``ticks``, split by time."""
    data = config.data
    arrays = ma_model.tick_arrays(ticks, data.features, data.horizons, data.alpha)
    result = ma_model.fit(config, data=ma_model.prepare(arrays, config.data))
    history = result["history"]
    return {
        "train_loss": history["train_loss"][-1],
        "val_accuracy": history["val_accuracy"][-1],
        "checkpoint": result["best"],
    }


def stream(
    ticks: ma_features.Ticks, config: ma_model.Config, checkpoint: str, device: str, replay: int
) -> dict:
    """Pushes ticks the model never saw through the engine, raw, one at a
    time, and checks each signal against the model run on the whole span at
    once (the batch features, then forward)."""
    model, inputs = ma_model.load_model(checkpoint, device)
    engine = StreamEngine(model, inputs, device=device)
    probabilities = torch.empty(replay, len(config.data.horizons), 3)

    def step(i: int) -> None:
        probabilities[i] = engine.push(ticks[i : i + 1]).probabilities[0]

    stats = measure_latency(step, replay, warmup=0)
    raw = ma_model.raw_columns(ticks[:replay], inputs.spec)
    x, dt = inputs.normalize(raw["x"], raw["dt"])
    with torch.no_grad():
        logits, _ = model(x.to(device)[None], dt.to(device)[None])
    agree = torch.allclose(probabilities, logits[0].softmax(-1).cpu(), rtol=1e-3, atol=1e-4)
    return {"latency": stats, "stream_equals_batch": agree}


def features(ticks: ma_features.Ticks, spec: ma_features.FeatureSpec, device: str,
             replay: int) -> dict:
    """The model's inputs over every tick at once (one pass of the batch op),
    then the first ``replay`` ticks one at a time through ``FeatureState``, as
    a live feed would see them: both must give the same rows."""
    spec = spec.including(ma_model.DT)
    batch, names = ma_features.compute_features(ticks, spec, device=device, dtype=torch.float64)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"features {tuple(batch.shape)}: {', '.join(names)}")
    state = ma_features.FeatureState(spec, device=device, dtype=torch.float64)
    rows = torch.empty(replay, len(names), dtype=torch.float64, device=device)

    def step(i: int) -> None:
        rows[i] = state.update_ticks(ticks[i : i + 1])[0]

    stats = measure_latency(step, replay, warmup=0, sync=device == "cuda")
    return {"latency": stats,
            "stream_equals_batch": torch.allclose(rows, batch[:replay], rtol=1e-9, atol=1e-9)}


def load(events: int, seed: int, path: Path | None) -> ma_features.Ticks:
    """Simulated ticks, or the ticks of a recorded file (any ``read_ticks`` takes)."""
    if path is not None:
        _stage(f"read {path}")
        ticks, report = ma_features.read_ticks(path, on_error="drop")
        print(report)
        return ticks
    _stage(f"simulate {events:,} order-book events (seed {seed})")
    start = time.perf_counter()
    ticks = ma_features.simulate(events, levels=10, seed=seed)
    elapsed = time.perf_counter() - start
    print(f"{len(ticks):,} events in {elapsed:.2f} s ({len(ticks) / elapsed / 1e6:.1f} M events/s)")
    return ticks


def run(events: int, seed: int, device: str, replay: int, out_dir: str,
        path: Path | None = None) -> dict:
    ticks = load(events, seed, path)
    if replay >= len(ticks) // 2:
        raise SystemExit(f"--replay {replay} leaves too few of the {len(ticks):,} ticks to "
                         "train on")

    spec = demo_config(device, out_dir).data.features
    _stage(f"the model's features on {device}: batch, then {replay:,} ticks one at a time")
    streamed_features = features(ticks, spec, device, replay)
    print(f"per-tick latency: {streamed_features['latency']}")
    print(f"stream equals batch on every replayed tick: "
          f"{streamed_features['stream_equals_batch']}")

    # The model trains on the first ticks and streams the ones right after them.
    trained_ticks = min(TRAIN_TICKS, len(ticks) - replay - 1)
    config = demo_config(device, out_dir)
    _stage(f"train the MA-Transformer on {trained_ticks:,} ticks ({device})")
    trained = train(ticks[:trained_ticks], config)
    print(
        f"final train loss {trained['train_loss']:.4f}, "
        f"validation accuracy {trained['val_accuracy']:.4f}"
    )
    print(f"checkpoint: {trained['checkpoint']} (ma-eval --checkpoint {trained['checkpoint']})")

    unseen = ticks[trained_ticks : trained_ticks + replay + 1]
    _stage(f"stream {replay:,} unseen raw ticks through the engine, one tick in, one signal out")
    streamed = stream(unseen, config, trained["checkpoint"], device, replay)
    print(f"tick-to-signal latency: {streamed['latency']}")
    print(f"streamed signals equal the batch forward: {streamed['stream_equals_batch']}")
    return {
        "events": len(ticks),
        "stream_equals_batch": streamed_features["stream_equals_batch"],
        "latency": streamed_features["latency"],
        "train": trained,
        "model_stream": streamed,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags over a YAML config (``--config``) over the built-in defaults."""
    parser = argparse.ArgumentParser(prog="ma-demo", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML file of the options below")
    parser.add_argument("--events", type=int, default=1_000_000, help="simulated events")
    parser.add_argument("--ticks", type=Path,
                        help="a recorded file to use instead of the simulator (LOBSTER message "
                             "file, Parquet or CSV), e.g. the AMZN day in data/lobster/")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--replay", type=int, default=2000, help="ticks replayed one by one")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out-dir", default="runs/demo",
                        help="where the trained checkpoint is kept (for ma-eval)")
    known, _ = parser.parse_known_args(argv)
    if known.config is not None:
        config = yaml.safe_load(known.config.read_text()) or {}
        unknown = set(config) - {a.dest for a in parser._actions}
        if unknown:
            parser.error(f"{known.config}: unknown keys {sorted(unknown)}")
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
    for flag in ("events", "replay"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.ticks is None and args.replay >= args.events:
        parser.error("--replay must be smaller than --events")
    if args.ticks is not None and not args.ticks.is_file():
        parser.error(f"--ticks {args.ticks}: no such file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = args.device
    if device == "auto":
        device = auto_device()
    result = run(args.events, args.seed, device, args.replay, args.out_dir, args.ticks)
    if not result["stream_equals_batch"]:
        raise SystemExit("streamed features differ from the batch features")
    if not result["model_stream"]["stream_equals_batch"]:
        raise SystemExit("streamed signals differ from the batch forward")

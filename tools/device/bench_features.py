"""GPU benchmarks of ma_kernels against their peers, measured in one run.

Times are medians of CUDA-event timings (triton.testing.do_bench when there,
else a plain event loop); each figure comes with its peer's, so ratios hold
even though absolute times move between machines. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import ma_kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from timing import environment, median_ms  # noqa: E402

from benchmarks.bench_features import (  # noqa: E402
    ANCHORS_SPEC,
    BOOK_SPEC,
    MODEL_SPEC,
    WINDOWS_SPEC,
    torch_book_features,
)
from benchmarks.common import random_series  # noqa: E402


def copy_floor_ms(moved: int) -> float:
    """A device copy whose reads plus writes are ``moved`` bytes: the time the
    kernel's own traffic takes at the copy engine's rate."""
    src = torch.empty(moved // 8, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    return median_ms(lambda: dst.copy_(src))


def with_ratios(result: dict) -> dict:
    """The timings of ``result`` as ratios: to the peer, to the floor, ticks per second."""
    return {
        **result,
        "speedup_vs_torch_eager": result["torch_eager_ms"] / result["ma_kernels_ms"],
        "ratio_to_copy_floor": result["ma_kernels_ms"] / result["copy_floor_ms"],
        "ticks_per_s": result["ticks"] / (result["ma_kernels_ms"] / 1e3),
    }


def bytes_read(series: dict, spec: dict) -> int:
    """Bytes of the input columns the op reads for ``spec``: the levels it
    looks at, time only for inter-arrival times and time windows, trades only
    for rolling columns and signed volume."""
    instant = spec.get("instant", ma_kernels.BOOK_INSTANT_FEATURES)
    levels = max(1, spec.get("ofi_levels", 0), *spec.get("depth_imbalance", ()))
    rows = len(series["time"])
    total = rows * levels * 4 * series["bid_price"].element_size()
    if "inter_arrival" in instant or spec.get("time_windows"):
        total += rows * 8
    rolling = spec.get("rolling", ma_kernels.BOOK_ROLLING_FEATURES) and (
        spec.get("windows", (100,)) or spec.get("time_windows"))
    if rolling:
        total += rows * (2 * series["trade_price"].element_size() + 1)
    elif "signed_volume" in instant:
        total += rows * (series["trade_size"].element_size() + 1)
    return total


def bench_book_features(ticks: int, spec: dict = BOOK_SPEC, levels: int = 5,
                        peers: bool = True) -> dict:
    """``spec`` on ``levels``-deep float64 ticks, float32 features out, against
    the same columns in torch eager (checked, then timed, where ``peers``)."""
    series = random_series(ticks, levels=levels, device="cuda")
    op = lambda: ma_kernels.book_features(**series, **spec, dtype=torch.float32)  # noqa: E731
    out = op()
    if not peers:
        return {"ticks": ticks, "levels": levels, "ma_kernels_ms": median_ms(op)}
    peer = torch_book_features(series, spec)
    err = ((out.double() - peer.double()).norm(dim=0) / peer.double().norm(dim=0)).max().item()
    if not bool(torch.isfinite(out).all()) or err > 1e-5:
        raise AssertionError(f"book_features disagrees with torch eager: {err}")
    del peer
    moved = bytes_read(series, spec) + out.numel() * out.element_size()
    result = with_ratios({
        "ticks": ticks,
        "levels": levels,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()},
        "columns": out.shape[1],
        "bytes_moved": moved,
        "max_relative_error_vs_torch_eager": err,
        "ma_kernels_ms": median_ms(op),
        "torch_eager_ms": median_ms(lambda: torch_book_features(series, spec)),
        "copy_floor_ms": copy_floor_ms(moved),
    })
    return result


# name: (spec, book levels, divisor of --ticks). The specs the model reads at
# 50 million level-1 ticks; the 5-level spec at 10 million.
SPECS = {
    "model_inputs": (MODEL_SPEC, 1, 1),
    "model_inputs_windows": (WINDOWS_SPEC, 1, 1),
    "anchors_subset": (ANCHORS_SPEC, 1, 1),
    "book_spec_5_levels": (BOOK_SPEC, 5, 5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ticks", type=int, default=50_000_000)
    parser.add_argument("--specs", nargs="+", choices=SPECS, default=list(SPECS))
    parser.add_argument("--ours-only", action="store_true",
                        help="time the op alone: no peer, no floor (A/B runs, tools/device/ab.sh)")
    args = parser.parse_args()
    report = {**environment(), "book_features": {}}
    for name in args.specs:
        spec, levels, divisor = SPECS[name]
        report["book_features"][name] = bench_book_features(args.ticks // divisor, spec, levels,
                                                            peers=not args.ours_only)
        torch.cuda.empty_cache()
        print(f"book_features {name} measured", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['gpu']}, torch {report['torch']}, commit {report['commit'][:10]}")
    for name, f in report["book_features"].items():
        if args.ours_only:
            print(f"book_features {name} {f['ticks']:,} ticks: {f['ma_kernels_ms']:.3f} ms")
            continue
        print(
            f"book_features {name} {f['ticks']:,} ticks: {f['ma_kernels_ms']:.3f} ms, torch eager "
            f"{f['torch_eager_ms']:.3f} ms ({f['speedup_vs_torch_eager']:.1f}x), copy floor "
            f"{f['copy_floor_ms']:.3f} ms ({f['ratio_to_copy_floor']:.2f}x of floor)"
        )


if __name__ == "__main__":
    main()

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
    BOOK_SPEC,
    WINDOW,
    torch_book_features,
    torch_l1_features,
    torch_microstructure_features,
)
from benchmarks.common import random_book, random_series, random_table  # noqa: E402


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


def bench_l1_features(ticks: int) -> dict:
    book = random_book(ticks, device="cuda")
    out = ma_kernels.l1_features(book)
    torch.testing.assert_close(out, torch_l1_features(book), rtol=1e-5, atol=1e-4)
    moved = book.numel() * book.element_size() + out.numel() * out.element_size()
    return with_ratios({
        "ticks": ticks,
        "bytes_moved": moved,
        "ma_kernels_ms": median_ms(lambda: ma_kernels.l1_features(book)),
        "torch_eager_ms": median_ms(lambda: torch_l1_features(book)),
        "copy_floor_ms": copy_floor_ms(moved),
    })


def bench_microstructure_features(ticks: int) -> dict:
    """The ANCHORS.md set: 6 float32 columns in, 8 out, rolling windows of 100 events."""
    table = random_table(ticks, device="cuda")
    out = ma_kernels.microstructure_features(table, WINDOW)
    peer = torch_microstructure_features(table, WINDOW)
    # Correct before fast: each column within 1e-5 (relative norm) of the peer,
    # whose window sums are float64 prefix differences.
    err = (out.double() - peer.double()).norm(dim=0) / peer.double().norm(dim=0)
    errors = dict(zip(ma_kernels.MICROSTRUCTURE_FEATURES, err.tolist(), strict=True))
    if not bool(torch.isfinite(out).all()) or max(errors.values()) > 1e-5:
        raise AssertionError(f"microstructure_features disagrees with torch eager: {errors}")
    # The faster peer sums in float32, as one would with the table's dtype;
    # how far that is from the float64 peer goes in the report beside its time.
    fast_peer = torch_microstructure_features(table, WINDOW, accumulate=torch.float32)
    fast_err = (fast_peer.double() - peer.double()).norm(dim=0) / peer.double().norm(dim=0)
    del peer, fast_peer
    moved = table.numel() * table.element_size() + out.numel() * out.element_size()
    result = with_ratios({
        "ticks": ticks,
        "window": WINDOW,
        "bytes_moved": moved,
        "max_relative_error_vs_torch_eager": max(errors.values()),
        "ma_kernels_ms": median_ms(lambda: ma_kernels.microstructure_features(table, WINDOW)),
        "torch_eager_ms": median_ms(lambda: torch_microstructure_features(table, WINDOW)),
        "torch_eager_float32_sums_ms": median_ms(
            lambda: torch_microstructure_features(table, WINDOW, accumulate=torch.float32)),
        "torch_eager_float32_sums_max_relative_error": fast_err.max().item(),
        "copy_floor_ms": copy_floor_ms(moved),
    })
    result["speedup_vs_torch_eager_float32_sums"] = (
        result["torch_eager_float32_sums_ms"] / result["ma_kernels_ms"])
    return result


def bench_book_features(ticks: int) -> dict:
    """BOOK_SPEC (5 levels, two event and two time windows): float64 ticks in,
    float32 features out, against the same columns in torch eager."""
    series = random_series(ticks, device="cuda")
    op = lambda: ma_kernels.book_features(**series, **BOOK_SPEC, dtype=torch.float32)  # noqa: E731
    out, peer = op(), torch_book_features(series)
    err = ((out.double() - peer.double()).norm(dim=0) / peer.double().norm(dim=0)).max().item()
    if not bool(torch.isfinite(out).all()) or err > 1e-5:
        raise AssertionError(f"book_features disagrees with torch eager: {err}")
    del peer
    moved = sum(t.numel() * t.element_size() for t in series.values()) + (
        out.numel() * out.element_size())
    return with_ratios({
        "ticks": ticks,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in BOOK_SPEC.items()},
        "columns": out.shape[1],
        "bytes_moved": moved,
        "max_relative_error_vs_torch_eager": err,
        "ma_kernels_ms": median_ms(op),
        "torch_eager_ms": median_ms(lambda: torch_book_features(series)),
        "copy_floor_ms": copy_floor_ms(moved),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ticks", type=int, default=50_000_000)
    args = parser.parse_args()
    report = {
        **environment(),
        "l1_features": bench_l1_features(args.ticks),
    }
    print("l1_features measured", flush=True)
    torch.cuda.empty_cache()
    report["microstructure_features"] = bench_microstructure_features(args.ticks)
    torch.cuda.empty_cache()
    report["book_features"] = bench_book_features(args.ticks // 5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['gpu']}, torch {report['torch']}, commit {report['commit'][:10]}")
    for name in ("l1_features", "microstructure_features", "book_features"):
        f = report[name]
        print(
            f"{name} {f['ticks']:,} ticks: {f['ma_kernels_ms']:.3f} ms, torch eager "
            f"{f['torch_eager_ms']:.3f} ms ({f['speedup_vs_torch_eager']:.1f}x), copy floor "
            f"{f['copy_floor_ms']:.3f} ms ({f['ratio_to_copy_floor']:.2f}x of floor)"
        )
    f = report["microstructure_features"]
    print(f"  torch eager with float32 sums {f['torch_eager_float32_sums_ms']:.3f} ms "
          f"({f['speedup_vs_torch_eager_float32_sums']:.1f}x), its error "
          f"{f['torch_eager_float32_sums_max_relative_error']:.1e}")


if __name__ == "__main__":
    main()

"""GPU benchmarks of ma_kernels against their peers, measured in one run.

Times are medians of CUDA-event timings (triton.testing.do_bench when there,
else a plain event loop); each figure comes with its peer's, so ratios hold
even though absolute times move between machines. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

import ma_kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from timing import median_ms  # noqa: E402

from benchmarks.bench_features import torch_l1_features  # noqa: E402
from benchmarks.common import random_book  # noqa: E402


def bench_l1_features(ticks: int) -> dict:
    book = random_book(ticks, device="cuda")
    out = ma_kernels.l1_features(book)
    torch.testing.assert_close(out, torch_l1_features(book), rtol=1e-5, atol=1e-4)
    moved = book.numel() * book.element_size() + out.numel() * out.element_size()
    src = torch.empty(moved // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    result = {
        "ticks": ticks,
        "bytes_moved": moved,
        "ma_kernels_ms": median_ms(lambda: ma_kernels.l1_features(book)),
        "torch_eager_ms": median_ms(lambda: torch_l1_features(book)),
        # The floor: the same bytes read + written by a device-to-device copy.
        "copy_floor_ms": median_ms(lambda: dst.copy_(src)),
    }
    result["speedup_vs_torch_eager"] = result["torch_eager_ms"] / result["ma_kernels_ms"]
    result["ratio_to_copy_floor"] = result["ma_kernels_ms"] / result["copy_floor_ms"]
    result["ticks_per_s"] = ticks / (result["ma_kernels_ms"] / 1e3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ticks", type=int, default=50_000_000)
    args = parser.parse_args()
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "ma_kernels": ma_kernels.__version__,
        "commit": os.environ.get("MA_COMMIT", "unknown"),
        "python": platform.python_version(),
        "l1_features": bench_l1_features(args.ticks),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    f = report["l1_features"]
    print(f"{report['gpu']}, torch {report['torch']}, commit {report['commit'][:10]}")
    print(
        f"l1_features {f['ticks']:,} ticks: {f['ma_kernels_ms']:.3f} ms, torch eager "
        f"{f['torch_eager_ms']:.3f} ms ({f['speedup_vs_torch_eager']:.1f}x), copy floor "
        f"{f['copy_floor_ms']:.3f} ms ({f['ratio_to_copy_floor']:.2f}x of floor)"
    )


if __name__ == "__main__":
    main()

"""What a kernel's warps spend their instructions and stalls on, from Nsight
Compute's per-instruction table (``ncu -i REPORT --page source --csv
--print-source sass``, as run.sh PROFILE=1 writes it): per kernel, the
instructions executed, the share of each opcode, the stall reasons sampled,
and the loops (runs of instructions executed equally often) that execute
the most.

    python3 tools/device/ncu_summary.py ncu_step_sass.csv [--loops 10]
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from collections import Counter
from pathlib import Path


def kernels(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(kernel name, its rows) for each kernel of the CSV (a kernel's table
    starts with a "Kernel Name" line, then its header)."""
    tables = re.split(r'^(?="Kernel Name")', text, flags=re.M)
    found = []
    for table in filter(str.strip, tables):
        lines = table.splitlines()
        name = next(csv.reader([lines[0]]))[1]
        rows = list(csv.DictReader(io.StringIO("\n".join(lines[1:]))))
        found.append((name, [r for r in rows if r.get("Source") is not None]))
    return found


def number(text: str | None) -> float:
    try:
        return float((text or "").replace(",", ""))
    except ValueError:
        return 0.0


def opcode(source: str) -> str:
    """The opcode of a SASS line, without its predicate and modifiers."""
    words = re.sub(r"^@!?U?P\w+\s+", "", source.strip()).split()
    return words[0].split(".")[0] if words else "?"


def summary(name: str, rows: list[dict[str, str]], loops: int) -> str:
    executed = [number(r.get("Instructions Executed")) for r in rows]
    total = sum(executed) or 1.0
    ops: Counter[str] = Counter()
    for row, count in zip(rows, executed, strict=True):
        ops[opcode(row["Source"])] += count
    stalls = Counter({key[len("stall_"):]: sum(number(r[key]) for r in rows)
                      for key in rows[0] if key.startswith("stall_") and "Not Issued" not in key})
    sampled = sum(stalls.values()) or 1.0
    lines = [name, f"  {total:,.0f} warp instructions executed ({len(rows)} in the code)",
             "  opcodes: " + ", ".join(f"{op} {100 * c / total:.1f}%"
                                       for op, c in ops.most_common(12)),
             "  stalls sampled: " + ", ".join(f"{s} {100 * c / sampled:.0f}%"
                                              for s, c in stalls.most_common(8))]
    # Runs of consecutive instructions executed equally often: loop bodies.
    runs: list[list[float]] = []
    for i, count in enumerate(executed):
        if runs and runs[-1][0] == count:
            runs[-1][2] = i
        else:
            runs.append([count, i, i])
    heavy = sorted(runs, key=lambda r: -r[0] * (r[2] - r[1] + 1))[:loops]
    lines.append("  heaviest runs (first line, length, times each, share):")
    for count, first, last in sorted(heavy, key=lambda r: r[1]):
        length = last - first + 1
        lines.append(f"    {rows[first].get('Address', '?')} {length:4d} x {count:9,.0f} "
                     f"{100 * count * length / total:5.1f}%  {rows[first]['Source'].strip()[:60]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--loops", type=int, default=10, help="runs to list per kernel")
    args = parser.parse_args()
    seen = set()
    for name, rows in kernels(args.csv.read_text()):
        if rows and name not in seen:  # a kernel profiled twice is listed once
            seen.add(name)
            print(summary(name, rows, args.loops))


if __name__ == "__main__":
    main()

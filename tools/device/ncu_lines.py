"""Where a kernel's instructions and stalls go by source line: Nsight
Compute's per-instruction table (``--page source --csv --print-source
sass``, which carries no line numbers) joined with the line table of the
same build's cubin (``nvdisasm -g``; the build has ``-lineinfo``). The SASS
of the table and of the cubin must be the same code: this is checked, and
a mismatch is an error, not a guess.

    python3 tools/device/ncu_lines.py ncu_window_sass.csv BUILD [--top 30]

BUILD: cubins, or the extension module itself (its cubins are taken out
with cuobjdump), e.g. ``$(python3 -c "import ma_kernels._C as c; print(c.__file__)")``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from ncu_summary import kernels, number, opcode

NVDISASM = os.environ.get("NVDISASM", "nvdisasm")


def cubins_of(path: Path, into: Path) -> list[Path]:
    """``path`` itself, or the cubins of a shared library extracted into ``into``."""
    if path.suffix != ".so":
        return [path]
    subprocess.run(["cuobjdump", "-xelf", "all", str(path.resolve())], cwd=into, check=True,
                   capture_output=True)
    return sorted(into.glob("*.cubin"))


def functions(cubin: Path) -> dict[str, list[tuple[str, str]]]:
    """Each function of a cubin: its (demangled) name to its instructions,
    as (source "file:line", SASS text), in address order."""
    text = subprocess.run([NVDISASM, "-g", "-c", str(cubin)], capture_output=True, text=True,
                          check=True).stdout
    found: dict[str, list[tuple[str, str]]] = {}
    body, where = None, "?"
    for line in text.splitlines():
        label = re.match(r"^\.text\.(\S+):", line)
        if label:
            name = subprocess.run(["c++filt", label.group(1)], capture_output=True, text=True,
                                  check=True).stdout.strip()
            body = found.setdefault(name, [])
            continue
        source = re.search(r'## File "([^"]+)", line (\d+)', line)
        if source:
            where = f"{Path(source.group(1)).name}:{source.group(2)}"
            continue
        instruction = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if instruction and body is not None:
            body.append((where, instruction.group(1)))
    return found


def base_name(name: str) -> str:
    """``window_columns_kernel`` of ``void ns::<unnamed>::window_columns_kernel<...>(...)``
    (ncu's spelling) or of ``void ns::(anonymous namespace)::...`` (c++filt's)."""
    name = name.replace("(anonymous namespace)", "anonymous")
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    return name.split("(")[0].split(" ")[-1].split("::")[-1]


def match(rows: list[dict[str, str]], candidates: list[list[tuple[str, str]]]):
    """The candidate whose opcodes equal the table's, instruction by instruction."""
    table = [opcode(r["Source"]) for r in rows]
    for code in candidates:
        if len(code) == len(table) and all(
                opcode(s) == t for (_, s), t in zip(code, table, strict=True)):
            return code
    return None


def by_line(rows: list[dict[str, str]], code: list[tuple[str, str]], top: int) -> str:
    executed, stalls = Counter(), Counter()
    for row, (where, _) in zip(rows, code, strict=True):
        executed[where] += number(row.get("Instructions Executed"))
        stalls[where] += number(row.get("Warp Stall Sampling (All Samples)"))
    total, sampled = sum(executed.values()) or 1.0, sum(stalls.values()) or 1.0
    lines = ["  by source line (share of instructions executed, of stall samples):"]
    for where in sorted(executed.keys() | stalls.keys(),
                        key=lambda w: -(executed[w] / total + stalls[w] / sampled))[:top]:
        share, stalled = 100 * executed[where] / total, 100 * stalls[where] / sampled
        lines.append(f"    {share:5.1f}%  {stalled:5.1f}%  {where}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("build", type=Path, nargs="+", help="cubins or a .so holding them")
    parser.add_argument("--top", type=int, default=30, help="source lines to list per kernel")
    args = parser.parse_args()
    code_of: dict[str, list[list[tuple[str, str]]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in args.build:
            for cubin in cubins_of(path, Path(scratch)):
                for name, code in functions(cubin).items():
                    code_of.setdefault(base_name(name), []).append(code)
    seen = set()
    for name, rows in kernels(args.csv.read_text()):
        if not rows or name in seen:
            continue
        seen.add(name)
        code = match(rows, code_of.get(base_name(name), []))
        if code is None:
            raise SystemExit(f"{name}: no function of these cubins has the profiled SASS "
                             "(another build?)")
        print(name)
        print(by_line(rows, code, args.top))


if __name__ == "__main__":
    main()

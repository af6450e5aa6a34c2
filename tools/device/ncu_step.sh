#!/usr/bin/env bash
# Nsight Compute on the model step kernel (the graph path's transformer_step)
# of the ANCHORS model after 300 pushes (profile_step.py), on N instruments
# (default 1): $OUT/ncu_step[N].txt (details) and ncu_step[N]_sass.csv (per
# SASS instruction), summarised by ncu_summary.py and by source line by
# ncu_lines.py.
#
#   OUT=/tmp/out bash tools/device/ncu_step.sh [instruments]
set -uo pipefail
cd "$(dirname "$0")/../.."
instruments=${1:-1}
name=ncu_step$([ "$instruments" = 1 ] || echo "$instruments")
ncu --clock-control none -k regex:transformer_step --launch-skip 290 -c 1 --section SpeedOfLight \
  --section WarpStateStats --section InstructionStats --section LaunchStats --section Occupancy \
  --section SourceCounters -o "/tmp/$name" -f python3 tools/device/profile_step.py "$instruments" \
  > /dev/null 2>&1 &&
  ncu -i "/tmp/$name.ncu-rep" --page details > "$OUT/$name.txt" 2>&1 &&
  ncu -i "/tmp/$name.ncu-rep" --page source --csv --print-source sass > "$OUT/${name}_sass.csv" 2>&1 &&
  python3 tools/device/ncu_summary.py "$OUT/${name}_sass.csv" &&
  python3 tools/device/ncu_lines.py "$OUT/${name}_sass.csv" "$(python3 -c \
    'import ma_kernels._C as c; print(c.__file__)')" --top 25

#!/usr/bin/env bash
# The feature op in one short device call (issue 18): build ma-kernels
# (run.sh), the GPU tests of book_features, the benchmark of every spec
# (bench_features.py), then Nsight Compute on the feature kernels of each
# spec (ncu_features.txt) and per SASS instruction of the rolling kernel on
# the ANCHORS subset (near_window_kernel) and on the spec of windows
# (ring_window_kernel): ncu_window_<spec>_sass.csv, summarised by
# ncu_summary.py and by source line by ncu_lines.py. Each step bounded so
# that the call ends before LIMIT seconds (bounded.sh). JSON under $OUT,
# everything else in $OUT/logs.tgz.
#
#   OUT=/tmp/out MA_COMMIT=$(git rev-parse --short HEAD) bash tools/device/features.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/bounded.sh
build_kernels || exit 1
status=0

(cd packages/ma-kernels && bounded 120 python3 -m pytest -q -p no:cacheprovider -m gpu \
  tests/test_book_features.py) > /tmp/tests-features.log 2>&1 || status=1
cp /tmp/tests-features.log "$OUT/"
echo "book_features tests: $(tail -1 /tmp/tests-features.log)"
grep -E "^(FAILED|ERROR)" /tmp/tests-features.log | head

bounded 150 python3 tools/device/bench_features.py --out "$OUT/features.json" | tail -4 || status=1

bounded 90 ncu --clock-control none -k regex:'columns_kernel|near_window|ring_window' --section SpeedOfLight \
  --section Occupancy --section LaunchStats --section WarpStateStats --section InstructionStats \
  --section MemoryWorkloadAnalysis python3 tools/device/profile_features.py \
  > "$OUT/ncu_features.txt" 2>&1 || status=1
grep -E "columns_kernel|near_window|ring_window|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Executed Ipc A" \
  "$OUT/ncu_features.txt"
for spec in anchors_subset model_inputs_windows; do
  bounded 90 ncu --clock-control none -k regex:'ring_window|near_window' -c 1 --set full --import-source yes \
    -o "/tmp/window_$spec" -f python3 tools/device/profile_features.py $spec > /dev/null 2>&1 &&
    ncu -i "/tmp/window_$spec.ncu-rep" --page source --csv --print-source sass \
      > "$OUT/ncu_window_${spec}_sass.csv" 2>&1 &&
    python3 tools/device/ncu_summary.py "$OUT/ncu_window_${spec}_sass.csv" | head -60 &&
    python3 tools/device/ncu_lines.py "$OUT/ncu_window_${spec}_sass.csv" "$(python3 -c \
      'import ma_kernels._C as c; print(c.__file__)')" --top 25 || status=1
done
echo "done at ${SECONDS}s"
pack_logs
exit $status

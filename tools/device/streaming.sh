#!/usr/bin/env bash
# The raw-tick-to-signal path in one short device call, for sessions with
# little device time: build ma-kernels (run.sh), the GPU tests of the
# streaming kernels and the engine, then measurements in order of worth,
# each bounded so that the whole call ends before LIMIT seconds (default
# 540): the graph round's parts (probe_round.py), the latency benchmark,
# the modes at 1-256 instruments (bench_modes.py), Nsight Compute on the
# step kernel at 256 instruments. JSON under $OUT, everything else in
# $OUT/logs.tgz.
#
#   OUT=/tmp/out MA_COMMIT=$(git rev-parse --short HEAD) bash tools/device/streaming.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/bounded.sh
build_kernels || exit 1
status=0

for package in ma-kernels:"tests/test_resident.py tests/test_transformer_step.py tests/test_stream_inputs.py" \
               ma-runtime:"tests/test_engine.py"; do
  name=${package%%:*}
  (cd "packages/$name" && bounded 150 python3 -m pytest -q -p no:cacheprovider -m gpu ${package#*:}) \
    > "/tmp/tests-$name.log" 2>&1 || status=1
  cp "/tmp/tests-$name.log" "$OUT/"
  echo "$name: $(tail -1 "/tmp/tests-$name.log")"
  grep -E "^(FAILED|ERROR)" "/tmp/tests-$name.log" | head
done

cd tools/device
bounded 100 python3 probe_round.py --calls 300 --out "$OUT/round.json" | tail -8 || status=1
bounded 150 python3 bench_latency.py --calls 1000 --out "$OUT/latency.json" |
  grep -E "engine|device_round|peer" || status=1
bounded 150 python3 bench_modes.py --out "$OUT/modes.json" || status=1
cd ../..
bounded 150 bash tools/device/ncu_step.sh 256 | head -80 || status=1
echo "done at ${SECONDS}s"
pack_logs
exit $status

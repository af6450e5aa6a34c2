# Sourced by the short device scripts (streaming.sh, features.sh), from the
# repository root: $OUT, the pure packages and the carried wheels on
# PYTHONPATH; `build_kernels` (run.sh's build alone); `bounded`, which
# runs a step for at most its own limit and never past LIMIT seconds of
# the call (default 540), so a call ends with its logs under $OUT; and
# `pack_logs`, which bundles them (the device tool returns 8 files at most).
export OUT=${OUT:-$PWD/benchmarks/results/latest}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/packages/ma-features/src:$PWD/packages/ma-model/src:$PWD/packages/ma-runtime/src:$PWD:/tmp/site
LIMIT=${LIMIT:-540}

# bounded SECONDS COMMAND...
bounded() {
  local want=$1 left=$((LIMIT - SECONDS))
  shift
  [ "$left" -gt 10 ] || { echo "skipped (time): $*"; return 0; }
  timeout $((want < left ? want : left)) "$@"
}

# Everything under $OUT but the JSON results into $OUT/logs.tgz; then the
# lines that say whether the tests passed, last, where a call's output tail
# shows them.
pack_logs() {
  (cd "$OUT" && find . -type f ! -name '*.json' ! -name logs.tgz | sed 's|^\./||' > /tmp/logs.list &&
    tar czf logs.tgz -T /tmp/logs.list && xargs rm -f < /tmp/logs.list && find . -type d -empty -delete)
  echo "== tests"
  tail -qn 1 /tmp/tests-*.log 2>/dev/null
  grep -hE "^(FAILED|ERROR)" /tmp/tests-*.log 2>/dev/null | head -20
}

build_kernels() {
  TESTS=0 BENCH=0 bash tools/device/run.sh > "$OUT/run.log" 2>&1 ||
    { tail -30 "$OUT/run.log"; return 1; }
  echo "built at ${SECONDS}s"
}

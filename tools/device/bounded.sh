# Sourced by the short device scripts (streaming.sh, features.sh): the
# pure packages and the carried wheels on PYTHONPATH, and `bounded`, which
# runs a step for at most its own limit and never past LIMIT seconds of
# the call (default 540), so a call ends with its logs under $OUT.
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

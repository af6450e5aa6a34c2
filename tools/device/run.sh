#!/usr/bin/env bash
# Everything GPU in one call on a machine with a GPU and its own torch:
# build ma-kernels against that torch, run every package's tests (GPU tests
# included), run the GPU benchmarks, write logs and JSON under $OUT.
#
#   OUT=/tmp/out MA_COMMIT=$(git rev-parse HEAD) bash tools/device/run.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/benchmarks/results/latest}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/packages/ma-features/src:$PWD/packages/ma-model/src:$PWD/packages/ma-runtime/src:$PWD${PYTHONPATH:+:$PYTHONPATH}

# Test-only packages the device image lacks travel as wheels in .whl (carried).
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi

echo "== build ma-kernels (CUDA required)"
MA_KERNELS_CUDA=ON CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-90} \
  python3 -m pip install --no-build-isolation --no-deps -q ./packages/ma-kernels \
  > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
python3 -c "import ma_kernels as m; assert m.cuda_available(), 'no CUDA in ma_kernels'; print('ma_kernels', m.__version__, 'cuda ok')" || exit 1

echo "== tests"
status=0
for package in ma-kernels ma-features ma-model ma-runtime; do
  (cd "packages/$package" && python3 -m pytest -q -p no:cacheprovider "$@" \
    --junitxml="$OUT/tests-$package.xml") > "$OUT/tests-$package.log" 2>&1
  code=$?
  echo "$package: $(tail -1 "$OUT/tests-$package.log") (exit $code)"
  [ $code -eq 0 ] || { status=1; grep -E "^(FAILED|ERROR)" "$OUT/tests-$package.log" | head -20; }
done

echo "== benchmarks"
python3 tools/device/bench_gpu.py --out "$OUT/gpu_bench.json" || status=1
python3 tools/device/bench_attention.py --out "$OUT/attention_bench.json" || status=1
exit $status

#!/usr/bin/env bash
# Everything GPU in one call on a machine with a GPU and its own torch:
# build ma-kernels against that torch, run every package's tests (GPU tests
# included), run the GPU benchmarks, write logs and JSON under $OUT.
#
#   OUT=/tmp/out MA_COMMIT=$(git rev-parse HEAD) bash tools/device/run.sh [pytest args]
#
# SANITIZE=1 also runs the CUDA tests of ma-kernels under compute-sanitizer
# (memcheck, racecheck; SANITIZE_TESTS names test files of ma-kernels to
# run instead of all); PROFILE=1 times the resident kernel's round by stage
# (resident_stages.json), profiles a training step by attention kind
# (profile_training.txt) and runs Nsight Compute on the attention kernels
# (ncu_attention.txt), the model step kernel (ncu_step.txt) and the feature
# kernels (ncu.txt), and per SASS instruction of the step and window kernels
# (ncu_*_sass.csv, summarised by ncu_summary.py); PROFILE=resident
# only the first; TESTS=0 skips the tests, TESTS=gpu runs only the GPU
# tests (about a minute), BENCH=0 skips the benchmarks;
# BENCHES picks benchmarks (default: features attention training latency;
# add scaling on a machine with 2 or more GPUs).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benchmarks/results/latest}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$ROOT/packages/ma-features/src:$ROOT/packages/ma-model/src:$ROOT/packages/ma-runtime/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}

# Test-only packages the device image lacks travel as wheels in .whl (carried).
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi

# Some images' pip cannot import scikit-build-core; then build with CMake
# directly and import the package from its source tree.
build_with_cmake() {
  local build=/tmp/ma-kernels-build src=$ROOT/packages/ma-kernels
  cmake -S "$src" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMA_KERNELS_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90a}" \
    -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" &&
  cmake --build $build -j "$(nproc)" &&
  cp $build/_C*.so "$src/src/ma_kernels/" || return 1
  local version
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/pyproject.toml")
  mkdir -p "$src/src/ma_kernels-$version.dist-info"
  printf 'Metadata-Version: 2.1\nName: ma-kernels\nVersion: %s\n' "$version" \
    > "$src/src/ma_kernels-$version.dist-info/METADATA"
  export PYTHONPATH=$src/src:$PYTHONPATH
}

echo "== build ma-kernels (CUDA required)"
{
  MA_KERNELS_CUDA=ON CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-90a} \
    python3 -m pip install --no-build-isolation --no-deps ./packages/ma-kernels ||
    { echo "pip build failed; building with CMake"; build_with_cmake; }
} > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
python3 -c "import ma_kernels as m; assert m.cuda_available(), 'no CUDA in ma_kernels'; print('ma_kernels', m.__version__, 'cuda ok')" || exit 1
echo "built in ${SECONDS}s"

status=0
[ "${TESTS:-1}" != 0 ] && echo "== tests"
selection=()
[ "${TESTS:-1}" = gpu ] && selection=(-m gpu)
for package in $([ "${TESTS:-1}" != 0 ] && echo ma-kernels ma-features ma-model ma-runtime); do
  (cd "packages/$package" &&
    python3 -m pytest -q -p no:cacheprovider ${selection[@]+"${selection[@]}"} "$@") \
    > /tmp/tests.log 2>&1
  code=$?
  { echo "===== $package (exit $code)"; cat /tmp/tests.log; } >> "$OUT/tests.log"
  echo "$package: $(tail -1 /tmp/tests.log) (exit $code)"
  [ $code -eq 0 ] || { status=1; grep -E "^(FAILED|ERROR)" /tmp/tests.log | head -20; }
done

if [ "${SANITIZE:-0}" = 1 ]; then
  echo "== compute-sanitizer"
  for tool in memcheck racecheck; do
    (cd packages/ma-kernels && MA_SANITIZER_SLOWDOWN=${MA_SANITIZER_SLOWDOWN:-20} \
      timeout "${SANITIZE_TIMEOUT:-280}" compute-sanitizer --tool $tool --error-exitcode 3 \
      python3 -m pytest -q -p no:cacheprovider -x -m gpu -k "not compile and not graph" \
      ${SANITIZE_TESTS:-}) \
      > /tmp/sanitizer.log 2>&1
    code=$?
    { echo "===== $tool (exit $code)"; cat /tmp/sanitizer.log; } >> "$OUT/sanitizer.log"
    echo "$tool: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" /tmp/sanitizer.log | tail -1) $(tail -1 /tmp/sanitizer.log) (exit $code)"
    [ $code -eq 0 ] || status=1
  done
fi

if [ "${PROFILE:-0}" != 0 ]; then
  echo "== the resident kernel's round by stage"
  python3 tools/device/profile_resident.py --out "$OUT/resident_stages.json" || status=1
fi
if [ "${PROFILE:-0}" = 1 ]; then
  echo "== torch.profiler: a training step by attention kind"
  python3 tools/device/profile_training.py --out "$OUT/profile_training.txt" || status=1
  echo "== ncu: attention kernels at the training shape"
  ncu --clock-control none -k regex:"forward_kernel|dq_kernel|dkdv_kernel" -c 3 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section InstructionStats --section ComputeWorkloadAnalysis \
    python3 tools/device/profile_attention.py > "$OUT/ncu_attention.txt" 2>&1 || status=1
  grep -E "_kernel<|Duration|Achieved Occupancy|Registers Per|Issue Slots Busy" "$OUT/ncu_attention.txt"
  echo "== ncu: the model step kernel (the graph path's), one instrument"
  OUT=$OUT bash tools/device/ncu_step.sh || status=1
  echo "== ncu: feature kernels"
  ncu --clock-control none -k regex:columns_kernel -c 8 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section InstructionStats --section SourceCounters \
    python3 tools/device/profile_features.py > "$OUT/ncu.txt" 2>&1 || status=1
  grep -E "columns_kernel|Duration|DRAM Throughput|Achieved Occupancy|Registers Per" "$OUT/ncu.txt"
  # Per SASS instruction (stalls, shared wavefronts) of the window kernel on the spec of windows.
  ncu --clock-control none -k regex:window_columns -c 1 --set full --import-source yes \
    -o /tmp/window -f python3 tools/device/profile_features.py model_inputs_windows > /dev/null 2>&1 &&
  ncu -i /tmp/window.ncu-rep --page source --csv --print-source sass \
    > "$OUT/ncu_window_sass.csv" 2>&1 || status=1
  python3 tools/device/ncu_summary.py "$OUT/ncu_window_sass.csv"
fi

if [ "${BENCH:-1}" = 1 ]; then
  echo "== benchmarks (at ${SECONDS}s)"
  for bench in ${BENCHES:-features attention training latency}; do
    python3 "tools/device/bench_$bench.py" --out "$OUT/${bench}_bench.json" || status=1
    echo "bench_$bench done at ${SECONDS}s"
  done
fi
exit $status

#!/usr/bin/env bash
# A/B of kernel changes in one device call: ma-kernels built with CMake as
# the working tree has it (A) and with each PATCH applied (B, C, ...: a
# `git diff` from the repository root each); then COMMAND runs against each
# in turn, A B ... A B ..., ROUNDS times (default 3), each run at most
# STEP_LIMIT seconds (default 150), with VARIANT and ROUND in its
# environment and that variant's build first on PYTHONPATH. The same GPU in
# the same minutes: the variants' differences are the changes'.
#
#   OUT=/tmp/out bash tools/device/ab.sh \
#     'python3 tools/device/bench_features.py --specs anchors_subset --ours-only \
#        --out $OUT/$VARIANT-$ROUND.json' change.patch [other.patch ...]
#
# The variants' tests, say, in the first round only: COMMAND runs in the
# repository root, the pristine sources (A's) in /tmp/ab/work:
#   '[ $ROUND = 1 ] && (cd /tmp/ab/work && python3 -m pytest -q -m gpu tests/test_x.py); ...'
set -uo pipefail
command=$1 rounds=${ROUNDS:-3} patches=() letters=ABCDEFGH variants=()
for p in "${@:2}"; do patches+=("$(realpath "$p")"); done
cd "$(dirname "$0")/../.."
source tools/device/bounded.sh
for i in $(seq 0 ${#patches[@]}); do variants+=("${letters:i:1}"); done
# Test-only packages the device image lacks (carried in .whl, as run.sh takes them).
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' packages/ma-kernels/pyproject.toml)

# One source tree and one CMake build for every variant: each patch is
# applied, built incrementally (only what it touches recompiles) and taken
# back out; the package with its extension goes to /tmp/ab/VARIANT/src.
work=/tmp/ab/work
rm -rf /tmp/ab && mkdir -p $work && cp -r packages/ma-kernels/. $work/ && rm -rf $work/build
for i in "${!variants[@]}"; do
  v=${variants[$i]} patch=
  (( i > 0 )) && patch=${patches[$i - 1]}
  { if [ -n "$patch" ]; then (cd $work && patch -p3 < "$patch") || exit 1; fi
    cmake -S $work -B /tmp/ab/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMA_KERNELS_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DPython_EXECUTABLE="$(command -v python3)" \
      -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" &&
    cmake --build /tmp/ab/build -j "$(nproc)" &&
    mkdir -p /tmp/ab/$v/src && cp -r $work/src/ma_kernels /tmp/ab/$v/src/ &&
    cp /tmp/ab/build/_C*.so /tmp/ab/$v/src/ma_kernels/ &&
    mkdir -p "/tmp/ab/$v/src/ma_kernels-$version.dist-info" &&
    printf 'Metadata-Version: 2.1\nName: ma-kernels\nVersion: %s\n' "$version" \
      > "/tmp/ab/$v/src/ma_kernels-$version.dist-info/METADATA" &&
    if [ -n "$patch" ]; then (cd $work && patch -R -p3 < "$patch"); fi
  } > "$OUT/build-$v.log" 2>&1 || { tail -30 "$OUT/build-$v.log"; exit 1; }
done
echo "built at ${SECONDS}s"
for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    VARIANT=$v ROUND=$round PYTHONPATH=/tmp/ab/$v/src:$PYTHONPATH bounded "${STEP_LIMIT:-150}" bash -c "$command" 2>&1 |
      sed "s/^/$v: /"
  done
done
echo "done at ${SECONDS}s"

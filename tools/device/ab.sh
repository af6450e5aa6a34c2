#!/usr/bin/env bash
# A/B of a kernel change in one device call: ma-kernels built twice with
# CMake, side by side, as the working tree has it (A) and with PATCH applied
# (B, a `git diff` from the repository root); then COMMAND runs against each
# in turn, A B A B ..., ROUNDS times (default 3), with VARIANT (A or B) and
# ROUND in its environment and that build first on PYTHONPATH. The same GPU
# in the same minutes: the two variants' difference is the change's.
#
#   OUT=/tmp/out bash tools/device/ab.sh change.patch \
#     'python3 tools/device/bench_features.py --specs anchors_subset --ours-only \
#        --out $OUT/$VARIANT-$ROUND.json'
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/device/bounded.sh
patch_file=$(realpath "$1") command=$2 rounds=${3:-3}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' packages/ma-kernels/pyproject.toml)

# build DIR: ma-kernels at DIR with its extension in DIR/src/ma_kernels.
build() {
  local dir=$1
  { cmake -S "$dir" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMA_KERNELS_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DPython_EXECUTABLE="$(command -v python3)" \
      -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" &&
    cmake --build "$dir/build" -j "$(( $(nproc) / 2 ))"; } > "$OUT/build-${dir##*/}.log" 2>&1 &&
  cp "$dir"/build/_C*.so "$dir/src/ma_kernels/" &&
  mkdir -p "$dir/src/ma_kernels-$version.dist-info" &&
  printf 'Metadata-Version: 2.1\nName: ma-kernels\nVersion: %s\n' "$version" \
    > "$dir/src/ma_kernels-$version.dist-info/METADATA"
}

for v in A B; do
  rm -rf "/tmp/ab/$v" && mkdir -p "/tmp/ab/$v" && cp -r packages/ma-kernels/. "/tmp/ab/$v/" &&
    rm -rf "/tmp/ab/$v/build"  # a pip build's leftovers
done
(cd /tmp/ab/B && patch -p3 < "$patch_file") > "$OUT/patch.log" 2>&1 ||
  { cat "$OUT/patch.log"; exit 1; }
build /tmp/ab/A & a=$!
build /tmp/ab/B & b=$!
wait $a && wait $b || { tail -20 "$OUT"/build-*.log; exit 1; }
echo "built at ${SECONDS}s"
for round in $(seq "$rounds"); do
  for v in A B; do
    VARIANT=$v ROUND=$round PYTHONPATH=/tmp/ab/$v/src:$PYTHONPATH bounded 150 bash -c "$command" 2>&1 |
      sed "s/^/$v: /"
  done
done
echo "done at ${SECONDS}s"

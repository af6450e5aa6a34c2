#!/usr/bin/env bash
# A/B of kernel changes in one device call: ma-kernels built with CMake,
# side by side, as the working tree has it (A) and with each PATCH applied
# (B, C, ...: a `git diff` from the repository root each); then COMMAND runs
# against each in turn, A B A B ..., ROUNDS times (default 3), with VARIANT
# (A, B, ...) and ROUND in its environment and that build first on
# PYTHONPATH. The same GPU in the same minutes: the variants' differences
# are the changes'.
#
#   OUT=/tmp/out bash tools/device/ab.sh \
#     'python3 tools/device/bench_features.py --specs anchors_subset --ours-only \
#        --out $OUT/$VARIANT-$ROUND.json' change.patch [other.patch ...]
set -uo pipefail
command=$1 rounds=${ROUNDS:-3} patches=() letters=ABCDEFGH variants=()
for p in "${@:2}"; do patches+=("$(realpath "$p")"); done
cd "$(dirname "$0")/../.."
source tools/device/bounded.sh
for i in $(seq 0 ${#patches[@]}); do variants+=("${letters:i:1}"); done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' packages/ma-kernels/pyproject.toml)

# build DIR: ma-kernels at DIR with its extension in DIR/src/ma_kernels.
build() {
  local dir=$1
  { cmake -S "$dir" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMA_KERNELS_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DPython_EXECUTABLE="$(command -v python3)" \
      -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" &&
    cmake --build "$dir/build" -j "$(( $(nproc) / ${#variants[@]} ))"; } > "$OUT/build-${dir##*/}.log" 2>&1 &&
  cp "$dir"/build/_C*.so "$dir/src/ma_kernels/" &&
  mkdir -p "$dir/src/ma_kernels-$version.dist-info" &&
  printf 'Metadata-Version: 2.1\nName: ma-kernels\nVersion: %s\n' "$version" \
    > "$dir/src/ma_kernels-$version.dist-info/METADATA"
}

pids=()
for i in "${!variants[@]}"; do
  v=${variants[$i]}
  rm -rf "/tmp/ab/$v" && mkdir -p "/tmp/ab/$v" && cp -r packages/ma-kernels/. "/tmp/ab/$v/" &&
    rm -rf "/tmp/ab/$v/build"  # a pip build's leftovers
  if (( i > 0 )); then
    (cd "/tmp/ab/$v" && patch -p3 < "${patches[$i - 1]}") > "$OUT/patch-$v.log" 2>&1 ||
      { cat "$OUT/patch-$v.log"; exit 1; }
  fi
  build "/tmp/ab/$v" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { tail -20 "$OUT"/build-*.log; exit 1; }; done
echo "built at ${SECONDS}s"
for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    VARIANT=$v ROUND=$round PYTHONPATH=/tmp/ab/$v/src:$PYTHONPATH bounded 150 bash -c "$command" 2>&1 |
      sed "s/^/$v: /"
  done
done
echo "done at ${SECONDS}s"

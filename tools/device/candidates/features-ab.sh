#!/usr/bin/env bash
# The feature A/B of the candidates here: A = the tree (v16 + v17),
# B = the fixed 512-row near tile, C = 3 blocks an SM, D = the ring kernel for
# near specs (PATCHES picks others). Round 1 of A also runs the op's GPU
# tests and the benchmark (FULL_SPECS, default every spec); then Nsight
# Compute per SASS line of A's rolling kernels while SECONDS < NCU_BEFORE.
here=tools/device/candidates out=$OUT
mkdir -p $out/ab
OUT=$out/ab LIMIT=${AB_LIMIT:-400} ROUNDS=${ROUNDS:-2} STEP_LIMIT=330 bash tools/device/ab.sh '
if [ $ROUND = 1 ] && [ $VARIANT = A ]; then
  (cd /tmp/ab/work && timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_book_features.py > $OUT/tests-A.log 2>&1)
  echo "tests: $(tail -1 $OUT/tests-A.log)"; grep -E "^(FAILED|ERROR)" $OUT/tests-A.log | head
  timeout 150 python3 tools/device/bench_features.py ${FULL_SPECS:+--specs $FULL_SPECS} --out $OUT/features.json | tail -8
fi
python3 tools/device/bench_features.py --specs anchors_subset --ours-only --out $OUT/$VARIANT-$ROUND.json | tail -1
' ${PATCHES:-$here/fixed-tile.patch $here/near-3-blocks.patch $here/ring-for-near.patch}
cp $out/ab/features.json $out/ 2>/dev/null
export PYTHONPATH=/tmp/ab/A/src:$PWD/packages/ma-features/src:$PWD/packages/ma-model/src:$PWD/packages/ma-runtime/src:$PWD:/tmp/site
so=$(python3 -c 'import ma_kernels._C as c; print(c.__file__)')
for spec in anchors_subset model_inputs_windows; do
  [ $SECONDS -lt ${NCU_BEFORE:-520} ] || break
  timeout 60 ncu --clock-control none -k regex:'ring_window|near_window' -c 1 --set full --import-source yes \
    -o /tmp/window_$spec -f python3 tools/device/profile_features.py $spec > /dev/null 2>&1 &&
  ncu -i /tmp/window_$spec.ncu-rep --page source --csv --print-source sass > $out/ab/ncu_window_${spec}_sass.csv 2>&1 &&
  ncu -i /tmp/window_$spec.ncu-rep --page details > $out/ab/ncu_window_${spec}.txt 2>&1 &&
  grep -E "Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Executed Ipc A" $out/ab/ncu_window_${spec}.txt &&
  python3 tools/device/ncu_lines.py $out/ab/ncu_window_${spec}_sass.csv $so --top 20
done
echo "done at ${SECONDS}s"
tar czf $out/ab.tgz -C $out/ab . && rm -rf $out/ab

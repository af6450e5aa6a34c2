#!/usr/bin/env bash
# The step A/B of the candidates here: A = the tree, B = clusters of
# 12, C = projections on the tensor cores (3xTF32), D = both. Round 1 runs
# each variant's transformer_step GPU tests, and A's resident and
# stream-input ones (the tree's reordered loads, notes/streaming.md).
here=tools/device/candidates out=$OUT
mkdir -p $out/ab
OUT=$out/ab LIMIT=${LIMIT:-540} ROUNDS=${ROUNDS:-2} STEP_LIMIT=240 bash tools/device/ab.sh '
if [ $ROUND = 1 ]; then
  tests=tests/test_transformer_step.py
  [ $VARIANT = A ] && tests="$tests tests/test_resident.py tests/test_stream_inputs.py"
  (cd /tmp/ab/work && timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu $tests > $OUT/tests-$VARIANT.log 2>&1)
  echo "tests: $(tail -1 $OUT/tests-$VARIANT.log)"; grep -E "^(FAILED|ERROR)" $OUT/tests-$VARIANT.log | head -3
fi
cd tools/device && python3 probe_round.py --calls 200 --out $OUT/$VARIANT-$ROUND.json | grep active_split
' $here/cluster-12.patch $here/mma-projections.patch $here/mma-cluster-12.patch
tar czf $out/ab.tgz -C $out/ab . && rm -rf $out/ab

"""One engine push after a warm-up, in eager mode, so that Nsight Compute
sees the model step kernel (``transformer_step``) of the ANCHORS model on
one instrument outside a graph (run.sh, PROFILE=1):

    ncu -k regex:transformer_step --launch-skip 20 -c 1 python3 this_file
"""

import ma_features
from ma_runtime.bench import anchors_engine

engine = anchors_engine(1, "cuda", mode="eager")  # one kernel a stage, no graph
ticks = ma_features.simulate(40, levels=1, seed=5)
for i in range(len(ticks)):
    engine.push(ticks[i : i + 1])

"""300 engine pushes in eager mode (past the window of 256, so attention
reads all of it), so that Nsight Compute sees the model step kernel
(``transformer_step``) of the ANCHORS model outside a graph (run.sh,
PROFILE=1), on one instrument or, with an argument, on that many stepped
together:

    ncu -k regex:transformer_step --launch-skip 290 -c 1 python3 this_file [instruments]
"""

import sys

import numpy as np

from ma_runtime.bench import anchors_engine, simulated_pushes

instruments = int(sys.argv[1]) if len(sys.argv) > 1 else 1
engine = anchors_engine(instruments, "cuda", mode="eager")  # one kernel a stage, no graph
for ticks, ids in simulated_pushes(300, instruments, engine.levels):
    engine.push(ticks, np.asarray(ids))

"""The ``ma-train`` CLI: ``ma-train --config configs/default.yaml`` (built-in defaults
without one), ``--resume`` after an interruption, a grid search when the
config has ``param_grid``, and several processes under ``torchrun``
(DistributedDataParallel; gloo on CPU, nccl on GPU).
The work is elsewhere: the fit loop in :mod:`ma_model.fit`, the grid in
:mod:`ma_model.grid`, the config in :mod:`ma_model.config`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from dataclasses import replace
from pathlib import Path

import torch.distributed as dist

from .config import load_config
from .fit import fit
from .grid import grid_search


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ma-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out_dir>/last.pt of the same config")
    parser.add_argument("--out-dir", help="override train.out_dir")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        overrides = {k: v for k, v in (("out_dir", args.out_dir), ("device", args.device)) if v}
        cfg = replace(cfg, train=replace(cfg.train, **overrides))
        if cfg.param_grid:
            result = grid_search(cfg, resume=args.resume)
        else:
            result = {**fit(cfg, resume=args.resume), "config": cfg}
    except ValueError as e:  # configuration and data errors, including CheckpointError
        parser.exit(2, f"ma-train: error: {e}\n")
    finally:
        if dist.is_initialized():
            # The DDP wrapper sits in a reference cycle that holds the group; freeing it
            # first lets destroy_process_group join gloo's worker threads, which
            # otherwise release their last tensors while the interpreter shuts down (abort).
            gc.collect()
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        for run in result.get("runs", []):
            print(f"grid: {run['out_dir']}: best val loss {run['best_val_loss']:.4f}")
        summary = {"best_checkpoint": result["best"], "best_val_loss": result["best_val_loss"],
                   "epochs_done": result["epochs_done"], "stopped_early": result["stopped_early"]}
        print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Two gloo processes under torchrun follow the single-process run on the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
import yaml

from ma_model import load_checkpoint
from ma_model.train import LAST


def _train(config, out_dir, processes):
    raw = config.to_dict()
    raw["train"]["out_dir"] = str(out_dir)
    path = out_dir.parent / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "ma_model.train", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_checkpoint(out_dir / LAST), done.stdout


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_gloo_processes_equal_one_process(tiny_config, tmp_path):
    single, _ = _train(tiny_config, tmp_path / "single", 1)
    double, stdout = _train(tiny_config, tmp_path / "ddp", 2)
    losses1, losses2 = single["history"]["step_loss"], double["history"]["step_loss"]
    assert len(losses1) == len(losses2) > 10
    torch.testing.assert_close(torch.tensor(losses2), torch.tensor(losses1), rtol=1e-4, atol=1e-5)
    for name, tensor in single["model"].items():
        torch.testing.assert_close(double["model"][name], tensor, rtol=1e-3, atol=1e-4)
    assert stdout.count("epoch 1:") == 1  # only rank 0 logs

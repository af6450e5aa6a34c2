"""Two gloo processes under torchrun follow the single-process run on the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from ma_model import load_checkpoint
from ma_model.fit import LAST


def _torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _train(config, out_dir, processes):
    raw = config.to_dict()
    raw["train"]["out_dir"] = str(out_dir)
    path = out_dir.parent / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = _torchrun(processes, "-m", "ma_model.train", "--config", str(path))
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


BENCH = """
import gc, json, sys
import torch.distributed as dist
from ma_model import benchmark_steps, config_from_dict
cfg = config_from_dict(json.loads(sys.argv[1]))
run = benchmark_steps(cfg, "ma", 4, batch=4, length=32, device="cpu", warmup=2)
if not dist.is_initialized() or dist.get_rank() == 0:
    print(json.dumps(run))
if dist.is_initialized():
    gc.collect()
    dist.destroy_process_group()
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_benchmark_steps_split_one_global_batch(tiny_config, tmp_path):
    """Two processes each take half of the same global batch: the same steps."""
    script = tmp_path / "bench.py"
    script.write_text(BENCH)
    config = json.dumps(tiny_config.to_dict())
    one, two = (json.loads(_torchrun(p, str(script), config).stdout.splitlines()[-1])
                for p in (1, 2))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(one["losses"]) == len(two["losses"]) == 6
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]),
                               rtol=1e-5, atol=1e-6)


CAPTURED_DDP = """
import json, sys
import torch.distributed as dist
from ma_model import benchmark_steps, config_from_dict
cfg = config_from_dict(json.loads(sys.argv[1]))
kwargs = dict(steps=3, batch=2, length=256, device="cuda", warmup=12, bf16=False)
alone = benchmark_steps(cfg, "ma", cuda_graph=True, **kwargs)
dist.init_process_group("nccl", init_method="file://" + sys.argv[2], rank=0, world_size=1)
wrapped = benchmark_steps(cfg, "ma", cuda_graph=True, **kwargs)  # DDP, its all-reduce captured
dist.destroy_process_group()
print(json.dumps([alone["losses"], wrapped["losses"]]))
"""


@pytest.mark.gpu
def test_a_captured_ddp_step_follows_the_plain_one(tiny_config, tmp_path):
    """DistributedDataParallel inside the captured step (one process: its
    all-reduce is an identity, but its hooks and NCCL run inside the graph)."""
    script = tmp_path / "captured_ddp.py"
    script.write_text(CAPTURED_DDP)
    cfg = tiny_config.to_dict()
    cfg["model"]["model_dim"] = 64  # head dim 32, one the CUDA kernels take
    done = _torchrun(1, str(script), json.dumps(cfg), str(tmp_path / "store"))
    alone, wrapped = json.loads(done.stdout.splitlines()[-1])
    torch.testing.assert_close(wrapped, alone, rtol=1e-5, atol=0)

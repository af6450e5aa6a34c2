import pytest
import torch

import ma_kernels
from ma_model.config import config_from_dict

# Tiny matmuls run slower with several threads on a shared 2-core machine (spin-waiting).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device (or ma_kernels built without CUDA)")
    if not (ma_kernels.cuda_available() and torch.cuda.is_available()):
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)

TINY = {
    "model": {"model_dim": 16, "num_heads": 2, "num_layers": 2, "window": 4,
              "dilations": [1, 2], "mlp_ratio": 2, "time_frequencies": 4},
    "data": {"events": 6000, "sequence_length": 16, "horizons": [5, 20]},
    "train": {"batch_size": 8, "epochs": 2, "patience": 5, "stride": 8, "warmup_steps": 5,
              "device": "cpu"},
}


@pytest.fixture
def tiny_config(tmp_path):
    """A config that trains in about a second on one CPU core."""
    raw = {section: dict(values) for section, values in TINY.items()}
    raw["train"]["out_dir"] = str(tmp_path / "run")
    return config_from_dict(raw)

import os

import pytest
import torch
from hypothesis import settings

# CI replays the same examples every run, so a red build is reproducible;
# elsewhere hypothesis keeps searching with fresh random examples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

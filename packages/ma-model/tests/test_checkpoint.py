import os
import pickle
import random
from importlib.metadata import version

import pytest
import torch

from ma_model import CheckpointError, load_checkpoint, save_checkpoint
from ma_model import checkpoint as checkpoint_module


def test_round_trip(tmp_path):
    model = torch.nn.Linear(4, 3)
    path = save_checkpoint(
        tmp_path / "run" / "last.pt",
        model=model.state_dict(),
        config={"lr": 1e-3, "layers": [1, 2]},
        step=7,
    )
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == {"lr": 1e-3, "layers": [1, 2]}
    assert loaded["format_version"] == checkpoint_module.FORMAT_VERSION
    assert loaded["versions"]["torch"] == version("torch")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded["model"][name], tensor)


def test_no_temporary_left_and_old_file_kept_on_failure(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.pt", step=1)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, step=2)
    assert os.listdir(tmp_path) == ["ck.pt"]
    assert load_checkpoint(path)["step"] == 1


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "not a readable checkpoint"),
        (pickle.dumps(_Evil()), "not a readable checkpoint"),
    ],
)
# torch warns about the protocol of the malicious pickle before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_or_malicious_file_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_pickled_code_in_a_torch_file_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint_module.FORMAT, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


def test_foreign_and_future_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an ma-model-checkpoint"):
        load_checkpoint(foreign)
    future = tmp_path / "future.pt"
    torch.save({"format": checkpoint_module.FORMAT, "format_version": 99}, future)
    with pytest.raises(CheckpointError, match="upgrade ma-model"):
        load_checkpoint(future)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_name_the_reason_not_torch_advice(tmp_path, seed):
    """Garbage makes torch's unpickler raise all sorts of errors (KeyError,
    UnpicklingError, ...): each is a CheckpointError, without torch's advice
    to load with weights_only=False."""
    path = tmp_path / "noise.pt"
    path.write_bytes(random.Random(seed).randbytes(512))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "noise.pt: not a readable checkpoint" in str(error.value)
    assert "weights_only` set to `False`" not in str(error.value)


def test_checkpoint_gets_the_mode_of_a_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "ck.pt", step=1)
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)

import json

import pytest

from ma_runtime import bench


def test_cli_measures_the_engine_and_its_peer(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--num_ticks", "20", "--instruments", "2", "--device", "cpu",
                "--json", str(out)])  # the original design's spelling
    report = json.loads(out.read_text())
    for name in ("engine", "peer"):
        stats = report[name]
        assert stats["count"] == 20
        assert 0 < stats["p50_us"] <= stats["p99_us"] <= stats["p999_us"] <= stats["max_us"]
    assert report["instruments"] == 2 and report["rejected"] == {}
    assert "floor_empty_graph" not in report and "device_round" not in report  # CUDA only
    assert "ticks/s through the engine" in capsys.readouterr().out


def test_profile_writes_a_trace_and_a_table(tmp_path):
    engine = bench.random_engine({"model_dim": 32, "num_heads": 2, "num_layers": 1,
                                  "window": 8, "dilations": [1]}, 2, "cpu")
    trace, table = bench.profile(engine, tmp_path / "profile", calls=5)
    assert json.loads(trace.read_text())["traceEvents"]
    assert "ma_kernels::transformer_step" in table.read_text()  # the kernels by name


def test_cli_refuses_a_bad_checkpoint_and_bad_counts(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        bench.main(["--model-path", str(bad), "--device", "cpu"])
    assert e.value.code == 2 and "not a readable checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--num-ticks", "0", "--device", "cpu"])
    assert "must be >= 1" in capsys.readouterr().err

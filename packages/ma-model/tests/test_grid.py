from dataclasses import replace

from ma_model import config_from_dict, grid_search, load_checkpoint
from ma_model.fit import BEST


def test_grid_search_reports_the_best(tiny_config):
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=1),
                  param_grid={"learning_rate": [1e-6, 3e-3]})
    best = grid_search(cfg, log=lambda *_: None)
    assert len(best["runs"]) == 2
    assert best["best_val_loss"] == min(r["best_val_loss"] for r in best["runs"])
    assert best["config"].train.learning_rate == 3e-3


def test_grid_search_over_feature_specs(tiny_config):
    """Each spec trains on its own columns; the best checkpoint rebuilds its model."""
    richer = {"rolling": ["ofi", "realized_variance"], "windows": [10]}
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=1),
                  param_grid={"features": [tiny_config.data.features, richer]})
    best = grid_search(cfg, log=lambda *_: None)
    assert [r["out_dir"].rsplit("/", 1)[1] for r in best["runs"]] == ["features=0", "features=1"]
    for run in best["runs"]:
        saved = load_checkpoint(f"{run['out_dir']}/{BEST}")
        columns = len(config_from_dict(saved["config"]).data.features.names)
        assert saved["model"]["embed.weight"].shape[1] == columns
        assert saved["normalization"]["standardizer"]["mean"].shape == (columns,)


def test_grid_search_shares_the_time_budget(tiny_config):
    # 6 ms: the first point's share (2 ms) ends after one step, which takes longer than 6 ms.
    cfg = replace(tiny_config, train=replace(tiny_config.train, epochs=3, max_minutes=1e-4),
                  param_grid={"seed": [0, 1, 2]})
    lines = []
    best = grid_search(cfg, log=lines.append)
    # The first point spends the whole budget in one step; the rest are not trained.
    assert len(best["runs"]) == 1 and best["budget_spent"]
    assert any("2 grid points not trained" in line for line in lines)

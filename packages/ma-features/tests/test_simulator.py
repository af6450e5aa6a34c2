import re

import numpy as np
import pandas as pd
import pytest
import torch

from ma_features import EventType, SimulatorConfig, Ticks, read_csv, read_parquet, simulate
from ma_features.simulate_cli import main


def test_output_is_valid_ticks():
    ticks = simulate(20_000, levels=5, seed=3)
    assert isinstance(ticks, Ticks) and len(ticks) == 20_000 and ticks.levels == 5
    assert ticks.time.dtype == np.int64 and (np.diff(ticks.time) > 0).all()
    assert ticks.event.dtype == np.int8 and ticks.trade_side.dtype == np.int8
    assert ticks.bid_price.dtype == np.float64 and ticks.trade_size.dtype == np.float64
    codes = {EventType.SUBMIT, EventType.CANCEL, EventType.DELETE, EventType.EXECUTE_VISIBLE}
    assert set(np.unique(ticks.event).tolist()) == codes
    trade = ticks.event == EventType.EXECUTE_VISIBLE
    assert ((ticks.trade_size > 0) == trade).all() and (ticks.trade_side != 0).sum() == trade.sum()
    assert (ticks.bid_price[:, 0] < ticks.ask_price[:, 0]).all()
    assert (np.isnan(ticks.ask_price) == (ticks.ask_size == 0)).all()


def test_same_seed_same_ticks():
    a, b = simulate(5000, seed=9), simulate(5000, seed=9)
    for name in ("time", "event", "bid_price", "ask_size", "trade_price", "trade_side"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.time, simulate(5000, seed=10).time)


def test_config_sets_the_price_grid():
    ticks = simulate(5000, levels=3, config=SimulatorConfig(tick_size=0.05, initial_bid=50.0))
    prices = ticks.bid_price[~np.isnan(ticks.bid_price)]
    np.testing.assert_array_equal(prices, np.round(prices / 0.05) / 20)
    assert abs(prices[0] - 50.0) < 1.0


def test_prices_are_the_nearest_doubles_to_the_grid():
    ticks = simulate(5000, levels=3)
    prices = ticks.ask_price[~np.isnan(ticks.ask_price)]
    np.testing.assert_array_equal(prices, np.round(prices, 2))


def test_bad_config_raises_value_error_naming_the_field():
    with pytest.raises(ValueError, match="cancel_rate"):
        simulate(10, config=SimulatorConfig(cancel_rate=-1.0))
    with pytest.raises(ValueError, match="levels"):
        simulate(10, levels=0)


def next_move(mid: np.ndarray) -> np.ndarray:
    """Sign of the next change of `mid` after each row, 0 where none follows."""
    change = np.flatnonzero(np.diff(mid) != 0)  # mid[i + 1] != mid[i]
    nxt = np.searchsorted(change, np.arange(len(mid)))
    label = np.zeros(len(mid))
    has = nxt < len(change)
    label[has] = np.sign(np.diff(mid)[change[nxt[has]]])
    return label


def balanced(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """Equal numbers of up and down rows, so chance is 0.5."""
    up, down = np.flatnonzero(y > 0), np.flatnonzero(y < 0)
    n = min(len(up), len(down))
    keep = np.concatenate([rng.choice(up, n, replace=False), rng.choice(down, n, replace=False)])
    return torch.from_numpy(x[keep]), torch.from_numpy((y[keep] > 0).astype(np.float64))


@pytest.mark.parametrize(
    "config",
    [SimulatorConfig(), SimulatorConfig(market_imbalance_bias=0.0, spread_imbalance_bias=0.0)],
    ids=["default", "no-imbalance-bias"],
)
def test_l1_imbalance_predicts_the_next_mid_move(config):
    """A logistic regression on L1 imbalance, fit on the first 60% of events,
    calls the direction of the next mid change on the rest well above chance.
    Without the imbalance biases the signal comes from the queue race alone:
    the thinner best queue empties first more often."""
    ticks = simulate(400_000, levels=10, seed=11, config=config)
    bid, ask = ticks.bid_size[:, 0], ticks.ask_size[:, 0]
    imbalance = (bid - ask) / (bid + ask)
    mid = (ticks.bid_price[:, 0] + ticks.ask_price[:, 0]) / 2
    label = next_move(mid)
    split = int(0.6 * len(ticks))
    # Train rows whose label is decided inside the training span only.
    last_change_in_train = np.flatnonzero(np.diff(mid[:split]) != 0)[-1]
    rng = np.random.default_rng(0)
    x_train, y_train = balanced(imbalance[:last_change_in_train + 1],
                                label[:last_change_in_train + 1], rng)  # fmt: skip
    x_test, y_test = balanced(imbalance[split:], label[split:], rng)
    assert len(x_test) > 2_000

    weight = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight], max_iter=100)

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(
            weight[0] * x_train + weight[1], y_train
        )
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        accuracy = ((weight[0] * x_test + weight[1] > 0) == (y_test > 0)).double().mean()
    assert weight[0] > 0, "a heavier bid should point up"
    assert accuracy > 0.6, f"held-out accuracy {accuracy:.3f}"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_a_readable_file(tmp_path, capsys, suffix):
    out = tmp_path / f"ticks{suffix}"
    main(["--events", "3000", "--levels", "3", "--seed", "5", "--out", str(out)])
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    ticks = simulate(3000, levels=3, seed=5)
    assert len(frame) == 3000 and frame.shape[1] == 2 + 4 * 3 + 3
    np.testing.assert_array_equal(frame["bid_price_2"], ticks.bid_price[:, 1])
    back, _ = (read_parquet if suffix == ".parquet" else read_csv)(out)
    for name in ("time", "event", "bid_price", "bid_size", "ask_price", "ask_size", "trade_price",
                 "trade_size", "trade_side"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, name), getattr(ticks, name), err_msg=name)
    assert "events/s" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--events", "0"], "--events must be at least 1, got 0"),
    (["--events", "-5"], "--events must be at least 1, got -5"),
    (["--events", "10", "--levels", "100000"], "--levels must be between 1 and 1000, got 100000"),
    (["--events", "10", "--seed", "-1"], "--seed must be at least 0"),
    (["--events", "10", "--out", "{tmp}/missing/a.csv"], "--out: no such directory '.*missing'"),
    # /sys refuses new files even to root, who may write into any mode-0500 directory
    (["--events", "10", "--out", "/sys/ticks.csv"], "--out: cannot write '/sys/ticks.csv'"),
    (["--events", "10", "--out", "{tmp}/folder.csv"], "--out: cannot write '.*folder.csv' \\(Is a"),
])
def test_cli_checks_its_flags_before_simulating(tmp_path, capsys, monkeypatch, argv, message):
    (tmp_path / "folder.csv").mkdir()  # a directory where the file should go
    ran = []
    monkeypatch.setattr("ma_features.simulate_cli.simulate", lambda *a, **k: ran.append(a))
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "ticks.csv")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and re.search(message, err), err
    assert not ran and not (tmp_path / "ticks.csv").exists()


def test_cli_rejects_unknown_suffix_and_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["--events", "10", "--out", str(tmp_path / "ticks.txt")])
    with pytest.raises(SystemExit):
        main(["--events", "10", "--levels", "0", "--out", str(tmp_path / "ticks.csv")])
    assert not (tmp_path / "ticks.csv").exists()

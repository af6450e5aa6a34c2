import numpy as np
import pytest
import torch

import ma_features
from ma_model import ModelInputs, rolling_standardize, rolling_step
from ma_model.inputs import ROLLING_MIN_DEVIATION


def _direct(z: torch.Tensor, window: int) -> torch.Tensor:
    """rolling_standardize row by row, from its definition."""
    out = torch.empty_like(z, dtype=torch.float64)
    for t in range(len(z)):
        recent = z[max(0, t - window + 1):t + 1].double()
        sd = recent.std(0, unbiased=False).clamp_min(ROLLING_MIN_DEVIATION)
        out[t] = (z[t].double() - recent.mean(0)) / sd
    return out


def test_rolling_standardize_is_each_columns_z_score_over_its_last_ticks():
    z = torch.randn(60, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1]) + 5
    torch.testing.assert_close(rolling_standardize(z, 7), _direct(z, 7))
    torch.testing.assert_close(rolling_standardize(z, 100), _direct(z, 100))  # never full


def test_rolling_standardize_is_causal_bounded_and_safe_on_a_still_column():
    z = torch.randn(50, 2, dtype=torch.float64)
    later = z.clone()
    later[30:] = 1e5  # a later spike changes nothing before it
    assert torch.equal(rolling_standardize(later, 10)[:30], rolling_standardize(z, 10)[:30])
    assert float(rolling_standardize(later, 10).abs().max()) <= 10**0.5
    still = torch.zeros(20, 1, dtype=torch.float64)
    still[10] = 1.0  # a column that stood still, then moved: finite, not 0 / 0
    out = rolling_standardize(still, 8)
    assert bool(torch.isfinite(out).all()) and float(out[0]) == 0 and float(out[10]) > 0


def test_rolling_step_equals_the_batch_over_each_series_past_the_wrap():
    """Two series, ticks of one at a time or both, each against its own last 5."""
    window, series = 5, torch.randn(2, 23, 3)
    recent = torch.zeros(2, window, 3, dtype=torch.float64)
    pos = torch.zeros(2, dtype=torch.int64)
    got = [[], []]
    for active in ([True, True], [True, False], [False, True]) * 8:
        active = torch.tensor(active) & (pos < series.shape[1])
        x = series[torch.arange(2), pos.clamp(max=series.shape[1] - 1)]
        out = rolling_step(recent, pos, x, active)
        assert out.dtype == x.dtype
        for b in active.nonzero().flatten().tolist():
            got[b].append(out[b])
        pos += active
    for b in range(2):
        expected = rolling_standardize(series[b, :len(got[b])], window).float()
        torch.testing.assert_close(torch.stack(got[b]), expected)


def test_the_rolling_window_travels_in_the_state_and_is_checked():
    spec = ma_features.FeatureSpec(instant=("spread",), rolling=())
    inputs = ModelInputs.fit(spec, torch.rand(10, 1), torch.rand(10), rolling=4)
    again = ModelInputs.from_state(spec, inputs.state_dict())
    assert again.rolling == 4
    x = torch.rand(9, 1, dtype=torch.float64)
    assert torch.equal(again.normalize(x, torch.rand(9))[0],
                       rolling_standardize(inputs.standardizer.transform(x).float(), 4).float())
    old = {k: v for k, v in inputs.state_dict().items() if k != "rolling"}  # before the option
    assert ModelInputs.from_state(spec, old).rolling is None
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="normalization rolling must be null or a number"):
            ModelInputs.from_state(spec, {**inputs.state_dict(), "rolling": bad})


def _mirrored(ticks: ma_features.Ticks, centre: float) -> ma_features.Ticks:
    """The book reflected about ``centre``: bids become asks, buys sells."""
    from dataclasses import replace

    traded = ticks.trade_size > 0
    return replace(ticks, bid_price=2 * centre - ticks.ask_price, ask_price=2 * centre
                   - ticks.bid_price, bid_size=ticks.ask_size, ask_size=ticks.bid_size,
                   trade_price=np.where(traded, 2 * centre - ticks.trade_price, 0.0),
                   trade_side=-ticks.trade_side)


@pytest.mark.parametrize("rolling", [None, 50])
def test_mirror_maps_the_inputs_to_those_of_the_mirrored_book(rolling):
    from ma_model import raw_columns

    spec = ma_features.FeatureSpec(
        instant=("spread", "mid_change", "microprice_offset", "imbalance", "ofi", "log_depth",
                 "signed_volume"),
        rolling=("ofi", "signed_volume", "realized_variance"), windows=(10, 50))
    ticks = ma_features.simulate(3000, levels=1, seed=5)
    centre = float(np.mean((ticks.bid_price[:, 0] + ticks.ask_price[:, 0]) / 2))
    a, b = raw_columns(ticks, spec), raw_columns(_mirrored(ticks, centre), spec)
    inputs = ModelInputs.fit(spec, a["x"][:2000], a["dt"][:2000], rolling)
    x, _ = inputs.normalize(a["x"], a["dt"])
    x_mirror, _ = inputs.normalize(b["x"], b["dt"])
    sign, offset = inputs.mirror()
    assert sign.tolist() == [1, -1, -1, -1, -1, 1, -1] + [-1, -1, 1] * 2
    # Exact but for realized variance: a log return of a reflected mid is
    # minus the original's only to first order.
    assert torch.allclose(x * sign + offset, x_mirror, atol=2e-2)
    exact = [i for i, n in enumerate(spec.names) if not n.startswith("realized")]
    assert torch.allclose((x * sign + offset)[:, exact], x_mirror[:, exact], atol=1e-4)


def test_mirror_refuses_price_levels():
    from ma_model.inputs import mirror_parity

    assert mirror_parity(("spread", "ofi_sum_10", "depth_imbalance_5")).tolist() == [1, -1, -1]
    with pytest.raises(ValueError, match=r"\['mid', 'vwap_10'\] have no bid/ask mirror"):
        mirror_parity(("spread", "mid", "vwap_10"))

"""Strategy configs are refused with a message naming the bad field."""

from __future__ import annotations

import pytest

from dalal_engine.strategy import registry
from dalal_engine.strategyconfig import StrategyConfigError, load_text


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("{name: a, strategy: nope, universe: [INFY]}", "strategies[0].strategy: unknown strategy"),
        (
            "{name: a, strategy: sma_cross, universe: [INFY], params: {fast_bars: 5}}",
            "strategies[0].params.slow_bars: Field required",
        ),
        (
            "{name: a, strategy: swing, universe: [INFY], risk: {risk_per_trade_pct: -1}}",
            "strategies[0].risk.risk_per_trade_pct: Input should be greater than 0",
        ),
        (
            "{name: a, strategy: swing, universe: [INFY], params: {stop_atr_multiplier: 2}}",
            "strategies[0].params.stop_atr_multiplier: Extra inputs are not permitted",
        ),
        ("{name: a, strategy: swing, universe: []}", "strategies[0].universe"),
        (
            "{name: a, strategy: swing, universe: [INFY], params: {target1_r: 2, target2_r: 1}}",
            "target2_r must be larger than target1_r",
        ),
        (
            "{name: a, strategy: swing, universe: [INFY], schedule: {every_seconds: 0}}",
            "strategies[0].schedule.every_seconds: Input should be greater than 0",
        ),
        (
            "{name: a, strategy: swing, universe: [INFY], schedule: {every: 60}}",
            "strategies[0].schedule.every_seconds: Field required",
        ),
    ],
)
def test_bad_config_is_refused_naming_the_field(yaml_text: str, field: str) -> None:
    with pytest.raises(StrategyConfigError) as info:
        load_text(yaml_text)
    assert field in info.value.message


def test_a_good_file_with_two_strategies() -> None:
    configs = load_text(
        """
strategies:
  - {name: swing-1, strategy: swing, universe: [RELIANCE, TCS], params: {time_stop_bars: 10}}
  - {name: ref, strategy: sma_cross, interval: 15minute, universe: [INFY],
     params: {fast_bars: 5, slow_bars: 20}, risk: {max_open_positions: 1},
     schedule: {every_seconds: 60}}
"""
    )
    assert [c.name for c in configs] == ["swing-1", "ref"]
    assert configs[0].schedule is None and configs[1].schedule.every_seconds == 60  # type: ignore[union-attr]
    assert configs[1].build().params.slow_bars == 20  # type: ignore[attr-defined]
    assert {"swing", "sma_cross"} <= set(registry())

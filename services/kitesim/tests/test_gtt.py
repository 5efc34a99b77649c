"""kitesim's GTT triggers through the official `kiteconnect` client: an OCO (two-leg) stop and
target on a CNC holding fires on the replay and its order fills; Kite's rules refuse bad
triggers with Kite's exception; a trigger is modified and deleted; triggers are in kitesim's
state file, so they outlive a restart. The shapes are those of Zerodha's recorded responses
(tests/fixtures/kite/gtt_get_order.json)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from dalal_shared.testing import wait_until

from .conftest import Kitesim, fixture_json

RELIANCE = 738561


def ltp(kitesim: Kitesim) -> Decimal:
    return kitesim.sim.clock.state(RELIANCE).last_price


def grid(value: Decimal) -> float:
    return float((value / Decimal("0.05")).quantize(Decimal(1)) * Decimal("0.05"))


def buy_ten(kitesim: Kitesim, kite: KiteConnect) -> None:
    kitesim.advance(seconds=60)
    oid = kite.place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="RELIANCE",
        transaction_type="BUY",
        quantity=10,
        product="CNC",
        order_type="LIMIT",
        price=grid(ltp(kitesim) * Decimal("1.01")),
    )
    kitesim.advance(seconds=60)
    assert kite.order_history(oid)[-1]["status"] == "COMPLETE"


def oco(kite: KiteConnect, kitesim: Kitesim, width: str = "0.003", **kw: Any) -> int:
    price = ltp(kitesim)
    lower = grid(price * (1 - Decimal(width)))
    upper = grid(price * (1 + Decimal(width)))
    sell = {"transaction_type": "SELL", "quantity": 10, "order_type": "LIMIT", "product": "CNC"}
    orders = kw.pop(
        "orders",
        [
            {**sell, "price": grid(Decimal(str(lower)) * Decimal("0.99"))},  # stop: marketable
            {**sell, "price": grid(Decimal(str(upper)) * Decimal("0.995"))},  # target
        ],
    )
    return int(
        kite.place_gtt(
            trigger_type=kite.GTT_TYPE_OCO,
            tradingsymbol="RELIANCE",
            exchange="NSE",
            trigger_values=kw.pop("trigger_values", [lower, upper]),
            last_price=float(price),
            orders=orders,
        )["trigger_id"]
    )


def test_an_oco_fires_on_the_replay_and_its_order_fills(kitesim: Kitesim, kite: KiteConnect):
    buy_ten(kitesim, kite)
    trigger_id = oco(kite, kitesim)
    gtt = kite.get_gtt(trigger_id)
    assert gtt["status"] == "active" and gtt["type"] == "two-leg"
    # Kite's shape, key for key
    recorded = fixture_json("gtt_get_order.json")["data"]
    assert set(gtt) == set(recorded)
    assert set(gtt["condition"]) == set(recorded["condition"])
    assert set(gtt["orders"][0]) == set(recorded["orders"][0])
    assert [g["id"] for g in kite.get_gtts()] == [trigger_id]

    def fired() -> dict[str, Any] | None:
        kitesim.advance(seconds=300)
        g = kite.get_gtt(trigger_id)
        return g if g["status"] == "triggered" else None

    done = wait_until(fired, timeout=60, message="the trigger fired within the replayed day")
    [leg] = [o for o in done["orders"] if o["result"] is not None]
    result = leg["result"]
    assert result["order_result"]["status"] == "success", result
    order_id = result["order_result"]["order_id"]
    assert f'"gtt": {trigger_id}' in result["meta"]
    lower, upper = done["condition"]["trigger_values"]
    assert result["triggered_at"] <= lower or result["triggered_at"] >= upper
    kitesim.advance(seconds=60)
    final = kite.order_history(order_id)[-1]
    assert (final["status"], final["transaction_type"], final["filled_quantity"]) == (
        "COMPLETE",
        "SELL",
        10,
    )
    # a fired trigger is done: it cannot be changed or deleted
    with pytest.raises(kex.InputException):
        kite.delete_gtt(trigger_id)


def test_kite_rules_refuse_bad_triggers(kitesim: Kitesim, kite: KiteConnect) -> None:
    buy_ten(kitesim, kite)
    price = ltp(kitesim)
    with pytest.raises(kex.InputException, match="too close"):
        oco(kite, kitesim, width="0.001")
    with pytest.raises(kex.InputException, match="between"):
        oco(kite, kitesim, trigger_values=[grid(price * Decimal("1.01")), grid(price * 2)])
    mis = {"transaction_type": "SELL", "quantity": 10, "order_type": "LIMIT", "product": "MIS"}
    with pytest.raises(kex.InputException, match="CNC"):
        oco(kite, kitesim, orders=[{**mis, "price": 1.0}, {**mis, "price": 1.0}])
    market = {"transaction_type": "SELL", "quantity": 10, "order_type": "MARKET", "product": "CNC"}
    with pytest.raises(kex.InputException, match="LIMIT"):
        oco(kite, kitesim, orders=[{**market, "price": 1.0}, {**market, "price": 1.0}])
    with pytest.raises(kex.InputException, match="trigger id"):
        kite.get_gtt(424242)


def test_a_trigger_is_modified_and_deleted(kitesim: Kitesim, kite: KiteConnect) -> None:
    buy_ten(kitesim, kite)
    trigger_id = oco(kite, kitesim, width="0.2")  # far away: it will not fire here
    price = ltp(kitesim)
    lower = grid(price * Decimal("0.7"))
    sell = {"transaction_type": "SELL", "quantity": 5, "order_type": "LIMIT", "product": "CNC"}
    assert (
        kite.modify_gtt(
            trigger_id=trigger_id,
            trigger_type=kite.GTT_TYPE_SINGLE,
            tradingsymbol="RELIANCE",
            exchange="NSE",
            trigger_values=[lower],
            last_price=float(price),
            orders=[{**sell, "price": lower}],
        )["trigger_id"]
        == trigger_id
    )
    changed = kite.get_gtt(trigger_id)
    assert changed["type"] == "single" and changed["condition"]["trigger_values"] == [lower]
    assert changed["orders"][0]["quantity"] == 5
    assert kite.delete_gtt(trigger_id)["trigger_id"] == trigger_id
    assert kite.get_gtt(trigger_id)["status"] == "deleted"
    kitesim.advance(seconds=3600)
    assert kite.get_gtt(trigger_id)["status"] == "deleted"


def test_triggers_outlive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "kitesim-state.json"
    first = Kitesim(kitesim_state_file=state).start()
    try:
        kite = first.client()
        buy_ten(first, kite)
        trigger_id = oco(kite, first, width="0.2")
        first.sim.save(sync=True)
    finally:
        first.stop()
    again = Kitesim(kitesim_state_file=state)  # a new process would read the same file
    gtt = again.sim.gtts.get(trigger_id)
    assert gtt.status == "active" and gtt.type == "two-leg"
    assert again.sim.gtts.seq >= trigger_id  # ids are never handed out twice

"""What the console computes from the services' answers."""

from __future__ import annotations

from datetime import UTC, date, datetime

from dalal_console.views import audit_trail, compare_runs, market_day, pnl_today


def test_the_day_is_the_market_clocks_in_ist() -> None:
    status = {"market_clock": {"now": "2024-01-03T23:50:00+00:00"}}
    # 23:50 UTC is already the next morning in IST
    assert market_day(status, datetime(2026, 1, 1, tzinfo=UTC)) == date(2024, 1, 4)
    assert market_day({"error": "x"}, datetime(2026, 1, 1, 20, tzinfo=UTC)) == date(2026, 1, 2)


def test_pnl_today_counts_only_trips_closed_that_day_exactly() -> None:
    trips = [
        {"closed_at": "2024-01-03T15:10:00+05:30", "realised_pnl_net": "100.10",
         "realised_pnl_gross": "120.30"},
        {"closed_at": "2024-01-03T09:20:00+05:30", "realised_pnl_net": "-0.20",
         "realised_pnl_gross": "0.05"},
        {"closed_at": "2024-01-02T15:10:00+05:30", "realised_pnl_net": "999",
         "realised_pnl_gross": "999"},
        {"closed_at": None, "realised_pnl_net": "5"},
        {"closed_at": "not a time", "realised_pnl_net": "5"},
    ]  # fmt: skip
    out = pnl_today({"unrealised": "-50.05"}, trips, date(2024, 1, 3))
    assert out == {
        "day": "2024-01-03",
        "round_trips": 2,
        "realised_net": "99.90",
        "realised_gross": "120.35",
        "charges": "20.45",
        "unrealised": "-50.05",
        "total": "49.85",
    }
    assert pnl_today({"error": "down"}, None, date(2024, 1, 3))["total"] == "0"


def test_compare_gives_both_values_and_the_difference() -> None:
    a = {
        "id": "a",
        "status": "done",
        "request": {},
        "summary": {
            "trades": 10,
            "data_end": "2023-06-30T00:00:00+05:30",
            "report": {"sharpe": 1.25, "total_pnl_rupees": "100.50"},
        },
    }
    b = {"id": "b", "status": "done", "request": {},
         "summary": {"trades": 7, "data_end": "2023-07-31T00:00:00+05:30",
                     "report": {"cagr_pct": 3.5, "total_pnl_rupees": "-20.25"}}}  # fmt: skip
    rows = {r["metric"]: r for r in compare_runs(a, b)["metrics"]}
    assert rows["trades"]["b_minus_a"] == "-3"
    assert rows["total_pnl_rupees"]["b_minus_a"] == "-120.75"  # exact: money as decimals
    assert rows["data_end"]["b_minus_a"] is None
    assert rows["sharpe"] == {"metric": "sharpe", "a": 1.25, "b": None, "b_minus_a": None}
    assert rows["cagr_pct"]["a"] is None


def test_audit_trail_tells_the_order_in_steps() -> None:
    intent = {"strategy": "manual", "side": "BUY", "quantity": 2, "symbol": "INFY",
              "status": "COMPLETE", "created_at": "t1"}  # fmt: skip
    order = {"order_type": "MARKET", "product": "CNC", "broker_order_id": "9", "status": "COMPLETE",
             "created_at": "t2", "trades": [{"trade_id": "T", "quantity": 2, "price": "10",
                                            "filled_at": "t3"}]}  # fmt: skip
    decisions = [
        {"client_order_id": "c1", "approved": True, "action": "ENTER", "at": "t0"},
        {"client_order_id": "other", "approved": False, "reason": "x"},
    ]
    trail = audit_trail(intent, order, decisions, "c1")
    assert [s["who"] for s in trail["steps"]] == [
        "engine risk", "engine (manual)", "broker", "exchange",
    ]  # fmt: skip
    assert trail["steps"][-1]["what"] == "fill 2 @ 10"
    missing = audit_trail({"error": "not_found"}, {"error": "not_found"}, [], "nope")
    assert missing["found"] is False and missing["steps"] == []

"""The SQL ledger: restart-safe, exactly-once, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal as D

from portfolio_recorded import SESSION, digest

from dalal_portfolio.service import PortfolioService
from dalal_portfolio.store import LedgerStore

NOW = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)


def open_service(url: str) -> PortfolioService:
    service = PortfolioService(
        LedgerStore.open(url), initial_capital=D("1000000"), clock=lambda: NOW
    )
    service.load()
    return service


def run(url: str, fills: list) -> PortfolioService:
    service = open_service(url)
    for fill in fills:
        service.apply_fill(fill)
    service.move_cash("dep-1", D("2500.50"), "top-up")
    return service


def test_same_sequence_gives_identical_ledgers_on_sqlite_and_postgres(
    tmp_path, postgres_url: str
) -> None:
    lite = run(f"sqlite:///{tmp_path}/a.sqlite3", SESSION)
    pg = run(postgres_url, SESSION)
    try:
        assert lite.store.dump() == pg.store.dump()
        assert lite.store.dump()["portfolio_round_trips"]  # the comparison saw real rows
        assert digest(lite.book) == digest(pg.book)
    finally:
        lite.store.close()
        pg.store.close()


def test_a_restarted_ledger_reads_back_what_it_wrote(database_url: str) -> None:
    rng = random.Random(3)
    shuffled = SESSION + SESSION[:4]
    rng.shuffle(shuffled)
    first = run(database_url, shuffled)
    expected = digest(first.book)
    written = first.store.dump()
    first.store.close()
    again = open_service(database_url)
    try:
        assert digest(again.book) == expected
        for fill in SESSION:  # the whole stream redelivered after the restart
            assert again.apply_fill(fill) is False
        assert again.store.dump() == written
        assert again.valuation().net_deposits == D("2500.50")
    finally:
        again.store.close()


def test_clean_and_messy_delivery_write_the_same_rows(tmp_path) -> None:
    clean = run(f"sqlite:///{tmp_path}/clean.sqlite3", SESSION)
    messy_order = list(reversed(SESSION)) + SESSION[::3]
    messy = run(f"sqlite:///{tmp_path}/messy.sqlite3", messy_order)
    try:
        c, m = clean.store.dump(), messy.store.dump()
        for table in ("portfolio_fills", "portfolio_positions", "portfolio_round_trips"):
            assert c[table] == m[table], table
    finally:
        clean.store.close()
        messy.store.close()


def test_every_new_fill_queues_its_position_events(tmp_path) -> None:
    service = run(f"sqlite:///{tmp_path}/o.sqlite3", SESSION)
    try:
        pending = service.store.pending_events()
        types = [e["type"] for e in pending]
        assert types.count("PositionClosed") == 2  # INFY and TCS
        assert "PositionReduced" in types and "PositionOpened" in types
        assert len({e["id"] for e in pending}) == len(pending)  # each envelope its own id
        assert service.store.pending_events() == pending  # ids fixed when written
        service.apply_fill(SESSION[0])  # a redelivery queues nothing
        assert service.store.pending_events() == pending
    finally:
        service.store.close()


def test_api_times_are_ist_before_and_after_a_restart(tmp_path) -> None:
    """Kite's fills come in IST, the store keeps UTC: a position's and a round trip's times
    read the same, in IST (+05:30), before and after a restart."""
    url = f"sqlite:///{tmp_path}/t.sqlite3"
    first = run(url, SESSION)
    before = (first.positions(include_closed=True), first.trades())
    first.store.close()
    again = open_service(url)
    try:
        after = (again.positions(include_closed=True), again.trades())
        assert after == before
        positions, trips = after
        stamps = [p["opened_at"] for p in positions if p["opened_at"]]
        stamps += [t[k] for t in trips for k in ("opened_at", "closed_at")]
        assert stamps and all(s.endswith("+05:30") for s in stamps)
    finally:
        again.store.close()

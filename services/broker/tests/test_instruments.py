"""Instruments master: O(1) lookups, and renamed or delisted symbols refused by name."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from dalal_broker.instruments import (
    BadInstrumentDump,
    InstrumentMaster,
    SymbolChanged,
    UnknownSymbol,
    parse_dump,
)

FIXTURES = Path(__file__).parent / "fixtures"
DUMP = (FIXTURES / "instruments_nse.csv").read_text()
OLD = (FIXTURES / "instruments_nse_2020-07.csv").read_text()


def master(as_of: date = date(2023, 11, 1)) -> InstrumentMaster:
    previous = [i.key for i in parse_dump(OLD)]
    return InstrumentMaster(parse_dump(DUMP), as_of=as_of, previous_keys=previous)


def test_lookup_by_symbol_and_token() -> None:
    m = master()
    infy = m.lookup("INFY")
    assert (infy.instrument_token, infy.exchange, infy.tick_size) == (
        408065,
        "NSE",
        Decimal("0.05"),
    )
    assert m.lookup("NSE:M&M").name == "MAHINDRA & MAHINDRA"
    assert m.lookup("nifty 50").instrument_token == 256265
    assert m.by_token(738561).tradingsymbol == "RELIANCE"


def test_hdfc_is_refused_with_its_successor() -> None:
    with pytest.raises(SymbolChanged) as exc:
        master().lookup("HDFC")
    assert "NSE:HDFCBANK" in exc.value.message
    assert exc.value.status_code == 410


def test_zomato_is_refused_once_the_rename_is_in_force_even_if_a_stale_dump_lists_it() -> None:
    assert master(as_of=date(2023, 11, 1)).lookup("ZOMATO").instrument_token == 1304833
    with pytest.raises(SymbolChanged) as exc:
        master(as_of=date(2025, 9, 30)).lookup("ZOMATO")
    assert "ETERNAL" in exc.value.message


def test_symbol_missing_since_an_earlier_dump_is_called_delisted() -> None:
    m = InstrumentMaster(
        parse_dump(DUMP), as_of=date(2023, 11, 1), previous_keys=["NSE:OLDCO"], changes=()
    )
    with pytest.raises(SymbolChanged):
        m.lookup("OLDCO")


def test_unknown_symbol_and_token() -> None:
    with pytest.raises(UnknownSymbol) as exc:
        master().lookup("NOSUCH")
    assert exc.value.status_code == 404
    with pytest.raises(UnknownSymbol):
        master().by_token(1)


def test_search_puts_the_exact_symbol_first() -> None:
    hits = master().search("itc")
    assert hits[0].tradingsymbol == "ITC"
    assert [h.tradingsymbol for h in master().search("bank")][:2] == ["HDFCBANK", "NIFTY BANK"]
    assert master().search("  ") == []


def test_malformed_dump_names_the_line() -> None:
    bad = DUMP.replace("408065,1594,INFY", "x,1594,INFY")
    with pytest.raises(BadInstrumentDump, match="line"):
        parse_dump(bad)
    with pytest.raises(BadInstrumentDump, match="columns"):
        parse_dump("a,b\n1,2\n")

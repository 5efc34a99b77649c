"""`dalal protections add | list | remove`, as a user runs them: real `dalal` processes against
a broker logged in to kitesim; the GTT is checked at kitesim through the official client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import API_KEY, Broker, Sim
from .test_protections_with_kitesim import buy, grid, ltp

pytestmark = pytest.mark.slow


def dalal(broker: Broker, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALAL_")}
    env["DALAL_VAR_DIR"] = str(tmp_path / "var")
    env["DALAL_API_KEY"] = API_KEY
    env["DALAL_BROKER_PORT"] = str(urlsplit(broker.url).port)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "dalal_shared.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_protect_a_holding_from_the_cli_list_it_and_remove_it(
    start_broker, kitesim: Sim, tmp_path: Path
) -> None:
    broker = start_broker()
    broker.login(kitesim)
    buy(broker, kitesim, "cli-prot-buy", "TCS", 5)
    price = ltp(kitesim, "TCS")
    stop, target = grid(price * Decimal("0.99")), grid(price * Decimal("1.01"))

    for args, named in (
        (("protections", "add", "TCS", "5", "--stop", "abc"), "'abc'"),
        (("protections", "add", "TCS", "5", "--stop", target, "--target", stop), "above"),
        (("protections", "add", "TCS", "0", "--stop", stop), "quantity 0"),
        (("protections", "list", "--status", "LIVE"), "'LIVE'"),
    ):
        bad = dalal(broker, tmp_path, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert named in bad.stderr and "Traceback" not in bad.stderr

    added = dalal(
        broker, tmp_path, "protections", "add", "NSE:TCS", "5", "--stop", stop,
        "--target", target, "--id", "cli-prot-1", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    row = json.loads(added.stdout)
    assert (row["status"], row["stop_price"], row["target_price"]) == ("ACTIVE", stop, target)
    gtt = kitesim.client().get_gtt(row["gtt_id"])
    assert gtt["status"] == "active"
    assert [Decimal(str(v)) for v in gtt["condition"]["trigger_values"]] == [
        Decimal(stop),
        Decimal(target),
    ]

    listed = dalal(broker, tmp_path, "protections", "list", "--status", "active")
    assert listed.returncode == 0 and "cli-prot-1" in listed.stdout

    removed = dalal(broker, tmp_path, "protections", "remove", "cli-prot-1")
    assert removed.returncode == 0 and "CANCELLED" in removed.stdout, removed.stderr
    assert kitesim.client().get_gtt(row["gtt_id"])["status"] in ("cancelled", "deleted")
    unknown = dalal(broker, tmp_path, "protections", "remove", "no-such-id")
    assert unknown.returncode == 2 and "no-such-id" in unknown.stderr

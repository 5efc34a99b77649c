"""Every service as a real process: health, readiness, metrics, auth, errors, secrets."""

from __future__ import annotations

import os

import httpx
import pytest

from dalal_shared.testing import ServiceProcess, free_port, wait_until

from .conftest import API_KEY, KITE_SECRET, SERVICES, Stack


@pytest.mark.parametrize("name", SERVICES)
def test_health_readiness_and_metrics(stack: Stack, name: str) -> None:
    base = stack.url(name)
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "ok"
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert f'dalal_service_info{{service="{name}"' in metrics.text
    assert "dalal_http_requests_total" in metrics.text
    assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == f"dalal-{name}"


@pytest.mark.parametrize("name", SERVICES)
def test_mutating_routes_need_the_api_key(stack: Stack, name: str) -> None:
    base = stack.url(name)
    # the gate stands before routing: any mutating request, on any path, needs the key
    for path in ("/healthz", "/anything"):
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key-0123456789"},
            {"Authorization": API_KEY},
        ):
            resp = httpx.post(f"{base}{path}", headers=headers, json={})
            assert resp.status_code == 401, (path, headers)
            assert resp.json()["error"] == "unauthorized"
    good = httpx.post(f"{base}/healthz", headers={"Authorization": f"Bearer {API_KEY}"})
    assert good.status_code == 405
    assert good.json()["error"] == "method_not_allowed"


def stack_auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key}"}


def test_unknown_route_is_a_json_404(stack: Stack) -> None:
    resp = httpx.get(f"{stack.url('portfolio')}/no/such/route", headers=stack_auth(stack))
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


def test_bad_order_input_gets_a_4xx_with_a_stable_code(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{stack.url('engine')}/engine/orders"
    bad = httpx.post(
        url,
        headers=auth,
        json={"client_order_id": "x y", "symbol": "INFY", "side": "HOLD", "quantity": 0},
    )
    assert bad.status_code == 422
    body = bad.json()
    assert body["error"] == "validation_error"
    assert {tuple(d["loc"][-1:]) for d in body["details"]} >= {
        ("client_order_id",),
        ("side",),
        ("quantity",),
    }
    not_json = httpx.post(
        url, headers={**auth, "content-type": "application/json"}, content=b"{nope"
    )
    assert not_json.status_code == 422
    unknown = httpx.get(f"{stack.url('engine')}/engine/orders/unknown1", headers=stack_auth(stack))
    assert unknown.status_code == 404


def test_readyz_reports_an_unreachable_redis(tmp_path) -> None:
    port = free_port()
    proc = ServiceProcess(
        "dalal_portfolio",
        env={
            "DALAL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "DALAL_PORT": str(port),
            "DALAL_DATABASE_URL": f"sqlite:///{tmp_path}/portfolio.sqlite3",
        },
        log_path=tmp_path / "p.log",
        port=port,
    ).start()
    try:
        proc.wait_healthy(timeout=60)
        resp = httpx.get(f"{proc.base_url}/readyz")
        assert resp.status_code == 503
        assert resp.json()["error"] == "not_ready"
        assert resp.json()["checks"]["redis"] != "ok"
    finally:
        assert proc.stop() == 0


def test_no_secret_reaches_the_logs(stack: Stack) -> None:
    token = "leaky-access-token-55aa"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for name in SERVICES:
        base = stack.url(name)
        httpx.get(f"{base}/healthz", params={"access_token": token, "request_token": token})
        httpx.post(f"{base}/x", headers=auth, params={"api_secret": token})
    httpx.post(f"{stack.url('broker')}/orders", headers=auth, json={"nope": API_KEY})

    def logged() -> bool:
        return "leaky" not in stack.logs() and stack.logs().count("/healthz") >= 4

    wait_until(logged, message="access log lines written")
    text = stack.logs()
    for secret in (API_KEY, KITE_SECRET, token):
        assert secret not in text
    assert os.path.getsize(stack.log_dir / "broker.log") > 0


def test_typed_clients_map_errors_to_codes(stack: Stack) -> None:
    from dalal_shared.clients import (
        EngineClient,
        ServiceError,
        ServiceUnavailable,
        client_for,
    )

    with EngineClient(stack.url("engine"), api_key=API_KEY) as engine:
        with pytest.raises(ServiceError) as refused:  # no Kite session: the risk manager says no
            engine.submit_order(
                {"client_order_id": "cl-1", "symbol": "TCS", "side": "BUY", "quantity": 1}
            )
        assert refused.value.status_code == 422
        assert refused.value.code == "risk_refused"
        with pytest.raises(ServiceError) as exc:
            engine.order("never-sent")
        assert (exc.value.status_code, exc.value.code) == (404, "not_found")
    with (
        EngineClient(stack.url("engine"), api_key="wrong-key-0123456789") as engine,
        pytest.raises(ServiceError) as exc,
    ):
        engine.submit_order({"client_order_id": "cl-2"})
    assert exc.value.code == "unauthorized"
    with (
        client_for("data", f"http://127.0.0.1:{free_port()}") as gone,
        pytest.raises(ServiceUnavailable),
    ):
        gone.health()

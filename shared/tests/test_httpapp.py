"""The HTTP conventions every service gets from the app factory."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from fastapi import FastAPI

from dalal_shared.errors import ConflictError, TemporaryError
from dalal_shared.httpapp import create_app

KEY = "unit-test-key-0123456789"


def _app(digest: str | None = hashlib.sha256(KEY.encode()).hexdigest(), **kw) -> FastAPI:
    async def redis_ok() -> None:
        return None

    async def db_down() -> None:
        raise ConnectionError("connection refused")

    checks = kw.pop("readiness", {"redis": redis_ok})
    app = create_app("unit", api_key_digest=digest, readiness=checks, **kw)

    @app.post("/things")
    async def make_thing(payload: dict) -> dict:
        return {"made": payload}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd line 3")

    @app.get("/busy")
    async def busy() -> None:
        raise TemporaryError("kite is rate limiting", code="kite_rate_limited")

    @app.get("/clash")
    async def clash() -> None:
        raise ConflictError("already exists")

    app.state.db_down = db_down
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://unit")


async def test_unexpected_errors_are_a_json_500_without_traceback() -> None:
    async with _client(_app()) as client:
        resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["error"] == "internal_error"
    assert "passwd" not in resp.text and "Traceback" not in resp.text


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/busy", 503, "kite_rate_limited"),
        ("/clash", 409, "conflict"),
        ("/nowhere", 404, "not_found"),
    ],
)
async def test_domain_errors_map_to_stable_codes(path: str, status: int, code: str) -> None:
    async with _client(_app()) as client:
        resp = await client.get(path)
    assert (resp.status_code, resp.json()["error"]) == (status, code)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope-nope-nope"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": "wrong"},
    ],
)
async def test_mutations_without_the_right_key_are_refused(headers: dict[str, str]) -> None:
    async with _client(_app()) as client:
        resp = await client.post("/things", json={"a": 1}, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
)
async def test_the_right_key_passes(headers: dict[str, str]) -> None:
    async with _client(_app()) as client:
        resp = await client.post("/things", json={"a": 1}, headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"made": {"a": 1}}


async def test_without_a_configured_key_mutations_are_closed() -> None:
    async with _client(_app(digest=None)) as client:
        resp = await client.post("/things", json={}, headers={"Authorization": "Bearer x" * 3})
        reads = await client.get("/healthz")
    assert resp.status_code == 401
    assert resp.json()["error"] == "auth_not_configured"
    assert reads.status_code == 200


async def test_public_paths_skip_the_key() -> None:
    async with _client(_app(public_paths=["/things"])) as client:
        resp = await client.post("/things", json={})
    assert resp.status_code == 200


async def test_readyz_names_the_failing_dependency() -> None:
    async def db_down() -> None:
        raise ConnectionError("connection refused")

    async def redis_ok() -> None:
        return None

    app = _app(readiness={"redis": redis_ok, "database": db_down})
    async with _client(app) as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"] == "not_ready"
    assert body["checks"]["redis"] == "ok"
    assert "connection refused" in body["checks"]["database"]


async def test_request_metrics_use_route_templates() -> None:
    app = _app()

    @app.get("/orders/{order_id}")
    async def one(order_id: str) -> dict:
        return {"id": order_id}

    async with _client(app) as client:
        for i in range(3):
            await client.get(f"/orders/{i}")
        text = (await client.get("/metrics")).text
    assert 'route="/orders/{order_id}"' in text
    assert 'route="/orders/1"' not in text

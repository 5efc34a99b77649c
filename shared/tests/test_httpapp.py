"""The HTTP conventions every service gets from the app factory."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI

from dalal_shared.errors import ConflictError, TemporaryError
from dalal_shared.httpapp import HttpPolicy, create_app

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


def _client(app: FastAPI, key: str | None = KEY) -> httpx.AsyncClient:
    """A client of `app` that presents `key` on every request (None: no key at all)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=transport, base_url="http://unit", headers=headers)


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
    async with _client(_app(), key=None) as client:
        resp = await client.post("/things", json={"a": 1}, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
)
async def test_the_right_key_passes(headers: dict[str, str]) -> None:
    async with _client(_app(), key=None) as client:
        resp = await client.post("/things", json={"a": 1}, headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"made": {"a": 1}}


async def test_without_a_configured_key_mutations_are_closed() -> None:
    async with _client(_app(digest=None), key=None) as client:
        resp = await client.post("/things", json={}, headers={"Authorization": "Bearer x" * 3})
        reads = await client.get("/healthz")
    assert resp.status_code == 401
    assert resp.json()["error"] == "auth_not_configured"
    assert reads.status_code == 200


async def test_public_paths_skip_the_key() -> None:
    async with _client(_app(public_paths=["/things"]), key=None) as client:
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


READ_KEY = "read-only-key-0123456789"


def _read_app(**kw) -> FastAPI:
    policy = HttpPolicy(
        api_key_digest=hashlib.sha256(KEY.encode()).hexdigest(),
        read_key_digest=hashlib.sha256(READ_KEY.encode()).hexdigest(),
        **kw,
    )
    app = create_app("unit", policy=policy, public_paths=["/hooks"])

    @app.get("/ledger")
    async def ledger() -> dict:
        return {"cash": "1"}

    @app.post("/ledger")
    async def change(payload: dict) -> dict:
        return payload

    @app.post("/hooks")
    async def hook(payload: dict) -> dict:
        return {"size": len(str(payload))}

    return app


@pytest.mark.parametrize(
    ("key", "method", "status"),
    [
        (None, "GET", 401),
        ("wrong-key-0123456789", "GET", 401),
        (READ_KEY, "GET", 200),
        (KEY, "GET", 200),
        (READ_KEY, "POST", 403),
        (KEY, "POST", 200),
    ],
)
async def test_reads_need_the_api_key_or_the_read_only_key(
    key: str | None, method: str, status: int
) -> None:
    async with _client(_read_app(), key=key) as client:
        resp = await client.request(method, "/ledger", json={"a": 1})
    assert resp.status_code == status
    if status >= 400:
        assert resp.json()["error"] in ("unauthorized", "read_only_key")


async def test_reads_can_be_configured_open_but_mutations_never() -> None:
    async with _client(_read_app(read_key_required=False), key=None) as client:
        read = await client.get("/ledger")
        write = await client.post("/ledger", json={})
    assert (read.status_code, write.status_code) == (200, 401)


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/hooks"]
)
async def test_probes_docs_and_public_routes_need_no_key(path: str) -> None:
    async with _client(_read_app(), key=None) as client:
        resp = await (client.post(path, json={}) if path == "/hooks" else client.get(path))
    assert resp.status_code == 200


async def _asgi_call(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]], chunks):
    """Drive `app` at the ASGI level: the body comes in `chunks`; returns (status, body, how
    many chunks the app pulled)."""
    pulled = 0
    sent: list[dict] = []
    body_chunks = list(chunks)

    async def receive() -> dict:
        nonlocal pulled
        if pulled < len(body_chunks):
            pulled += 1
            return {
                "type": "http.request",
                "body": body_chunks[pulled - 1],
                "more_body": pulled < len(body_chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"unit"), (b"authorization", f"Bearer {KEY}".encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("unit", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


async def test_a_declared_oversized_body_is_refused_before_a_byte_is_read() -> None:
    app = _read_app(max_body_bytes=10_000)
    big = [b"x" * 5000] * 4
    status, body, pulled = await _asgi_call(
        app, "/ledger", [(b"content-length", b"20000"), (b"content-type", b"application/json")], big
    )
    assert status == 413
    assert b"payload_too_large" in body
    assert pulled == 0


async def test_a_chunked_oversized_body_is_cut_off_at_the_limit() -> None:
    app = _read_app(max_body_bytes=10_000)
    chunks = [b'{"a": "', *([b"y" * 4000] * 10), b'"}']
    status, body, pulled = await _asgi_call(
        app, "/ledger", [(b"content-type", b"application/json")], chunks
    )
    assert status == 413
    assert b"payload_too_large" in body
    assert pulled <= 4  # stopped reading just past 10 kB, not at 40 kB


async def test_public_routes_get_the_small_limit_and_small_bodies_pass() -> None:
    app = _read_app(max_body_bytes=100_000, public_max_body_bytes=2_000)
    async with _client(app, key=None) as client:
        small = await client.post("/hooks", json={"a": "b" * 1000})
        large = await client.post("/hooks", json={"a": "b" * 3000})
    async with _client(app) as client:
        elsewhere = await client.post("/ledger", json={"a": "b" * 3000})
    assert small.status_code == 200
    assert (large.status_code, large.json()["error"]) == (413, "payload_too_large")
    assert elsewhere.status_code == 200


async def test_a_bad_content_length_is_a_400() -> None:
    status, body, pulled = await _asgi_call(
        _read_app(), "/ledger", [(b"content-length", b"lots")], [b"{}"]
    )
    assert (status, pulled) == (400, 0)
    assert b"bad_request" in body


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (redis.exceptions.ConnectionError("Connection refused"), "redis"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "redis"),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")), "database"),
    ],
)
async def test_a_dependency_outage_is_a_503_not_a_500(error: Exception, dependency: str) -> None:
    app = _app()

    @app.post("/orders")
    async def place() -> None:
        raise error

    async with _client(app) as client:
        resp = await client.post("/orders")
    assert resp.status_code == 503
    assert resp.json()["error"] == "dependency_unavailable"
    assert resp.json()["dependency"] == dependency
    assert "server closed" not in resp.text and "refused" not in resp.text


async def test_openapi_documents_the_error_answers_and_metrics_as_text() -> None:
    app = _read_app()

    @app.delete("/ledger/{entry}")
    async def remove(entry: str) -> dict:
        return {"removed": entry}

    async with _client(app, key=None) as client:
        spec = (await client.get("/openapi.json")).json()
    error_ref = {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    remove_op = spec["paths"]["/ledger/{entry}"]["delete"]["responses"]
    for status in ("401", "403", "404", "409", "413", "422", "503"):
        assert remove_op[status]["content"]["application/json"]["schema"] == error_ref, status
    read_op = spec["paths"]["/ledger"]["get"]["responses"]
    assert "401" in read_op and "503" in read_op
    hook_op = spec["paths"]["/hooks"]["post"]["responses"]
    assert "403" not in hook_op and "413" in hook_op  # no key; its own credentials may fail
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


async def test_open_probes_are_open_to_reads_only() -> None:
    async with _client(_read_app(), key=None) as client:
        resp = await client.post("/healthz", json={})
    assert (resp.status_code, resp.json()["error"]) == (401, "unauthorized")

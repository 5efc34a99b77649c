"""The data-cache's readiness covers its cache directory."""

from __future__ import annotations

from pathlib import Path

import httpx

from dalal_data.app import build_app
from dalal_data.config import DataSettings


async def test_readyz_fails_when_the_cache_dir_cannot_be_made(
    tmp_path: Path, redis_url: str
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = build_app(DataSettings(redis_url=redis_url, cache_dir=blocker / "cache"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["cache_dir"] != "ok"

"""/docs and /redoc of every service work with no internet: the pages name only assets the
service serves itself (from the fastapi-offline package), and those assets are served."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import SERVICES, Stack

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


def _referenced(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets_and_they_are_served(stack: Stack, page: str) -> None:
    for name in SERVICES:
        base = stack.url(name)
        resp = httpx.get(f"{base}{page}")  # no key: the API description is open to read
        assert resp.status_code == 200, (name, page, resp.text[:200])
        html = resp.text
        assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
        refs = _referenced(html)
        assert any(r.endswith(".js") for r in refs), refs
        for ref in refs:
            assert ref.startswith("/"), f"{name}{page} loads {ref} from elsewhere"
            asset = httpx.get(f"{base}{ref}")
            assert asset.status_code == 200, (name, ref)
            assert len(asset.content) > 100, (name, ref)
            if ref.endswith(".js"):
                assert "javascript" in asset.headers["content-type"]
            if ref.endswith(".css"):
                assert asset.headers["content-type"].startswith("text/css")
        # the page describes this service's API, which is there too
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == f"dalal-{name}"


def test_only_the_shipped_assets_are_open(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    base = stack.url("broker")
    # anything else under /docs-assets is not open, and with the key it is not found
    assert httpx.get(f"{base}/docs-assets/nothing.js").status_code == 401
    resp = httpx.get(f"{base}/docs-assets/nothing.js", headers=auth)
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    resp = httpx.get(f"{base}/docs-assets/..%2F..%2Fpyproject.toml", headers=auth)
    assert resp.status_code == 404

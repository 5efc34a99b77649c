"""The console's pages: one HTML shell each (navigation, a main element the page's script
fills); the data comes from `/api/...` and live events. No inline script or style (the
Content-Security-Policy allows only the console's own files)."""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path

PAGES: dict[str, str] = {
    "/": "Today",
    "/orders": "Positions & orders",
    "/strategies": "Strategies",
    "/backtests": "Backtests & sweeps",
    "/reconcile": "Reconcile & DLQ",
}
# in the assets' URLs: a new release's script and style are fetched anew, not taken from a cache
ASSET_VERSION = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted((Path(__file__).parent / "static").iterdir()))
).hexdigest()[:12]


def _head(title: str, csrf: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta name='csrf-token' content='{escape(csrf)}'>"
        f"<title>{escape(title)} · Dalal</title>"
        f"<link rel='stylesheet' href='/static/console.css?v={ASSET_VERSION}'>"
        f"<script defer src='/static/console.js?v={ASSET_VERSION}'></script>"
        "</head>"
    )


def page(path: str, csrf: str, grafana_url: str | None) -> str:
    title = PAGES[path]
    links = "".join(
        f"<a href='{href}'{' aria-current=page' if href == path else ''}>{escape(name)}</a>"
        for href, name in PAGES.items()
    )
    grafana = (
        f"<a class='ext' href='{escape(grafana_url)}' rel='noopener'>Grafana</a>"
        if grafana_url
        else ""
    )
    return (
        _head(title, csrf) + f"<body data-page='{path.strip('/') or 'today'}'>"
        "<header><span class='brand'>Dalal</span>"
        f"<nav>{links}{grafana}</nav>"
        "<span id='live' class='live' title='live updates'>offline</span>"
        "<button id='logout' class='quiet' type='button'>Log out</button></header>"
        "<div id='flash' role='status' aria-live='polite'></div>"
        f"<main id='main'><h1>{escape(title)}</h1><p class='muted'>Loading…</p></main>"
        "<dialog id='confirm'><form method='dialog'><p id='confirm-text'></p>"
        "<menu><button value='cancel' type='submit'>Cancel</button>"
        "<button value='ok' id='confirm-ok' class='danger' type='submit'>Confirm</button>"
        "</menu></form></dialog>"
        "</body></html>"
    )


def login_page() -> str:
    return (
        _head("Log in", "") + "<body data-page='login'><main id='main' class='narrow'>"
        "<h1>Dalal console</h1>"
        "<form id='login-form'><label for='key'>API key</label>"
        "<input id='key' name='key' type='password' autocomplete='current-password' "
        "required autofocus>"
        "<p class='muted'>The key is in <code>var/api_key</code> of the stack "
        "(<code>DALAL_API_KEY</code> in containers).</p>"
        "<button type='submit'>Log in</button><p id='login-error' class='error' "
        "role='alert'></p></form></main></body></html>"
    )

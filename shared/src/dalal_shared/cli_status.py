"""What `dalal status` gathers: services alive and ready, the broker's session, kill switch and
guards, the engine's mode, the workers (their Prometheus listeners answer) and the last
reconciliation of each book (from the services' own /metrics)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import httpx

from dalal_shared.clients import ServiceClient, ServiceError, ServiceUnavailable, client_for
from dalal_shared.stack import WORKERS, StackSettings, available_services

RECONCILE_METRICS = ("dalal_reconcile_last_run_timestamp_seconds", "dalal_reconcile_breaks")


def gather(settings: StackSettings) -> dict[str, Any]:
    """Everything `dalal status` shows, as JSON-ready data (what `--json` prints)."""
    key = settings.local_api_key()
    services = {name: _service(name, settings.url_of(name)) for name in available_services()}
    out: dict[str, Any] = {
        "services": services,
        "all_ready": all(s["ready"] for s in services.values()),
        "broker": None,
        "engine": None,
        "workers": {},
        "reconcile": {},
    }
    with ServiceClient(settings.url_of("broker"), api_key=key, timeout=5) as broker:
        broker.service = "broker"
        with contextlib.suppress(ServiceUnavailable, ServiceError):
            out["broker"] = broker.request_object("GET", "/status")
    if "engine" in services:
        with ServiceClient(settings.url_of("engine"), api_key=key, timeout=5) as engine:
            engine.service = "engine"
            try:
                e = engine.request_object("GET", "/engine/status")
                out["engine"] = {
                    "mode": e.get("mode"),
                    "safety_state_known": e.get("safety_state_known"),
                    "open_positions": len(e.get("open_positions") or []),
                    "open_intents": e.get("open_intents"),
                }
            except (ServiceUnavailable, ServiceError):
                pass
    for worker, _module, service in WORKERS:
        if service not in services:
            continue
        url = f"http://127.0.0.1:{settings.metrics_port_of(worker)}/metrics"
        try:
            up = httpx.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            up = False
        out["workers"][worker] = {"up": up, "metrics": url}
    for scope in ("portfolio", "broker"):
        if scope in services and services[scope]["alive"]:
            out["reconcile"][scope] = _last_reconcile(settings.url_of(scope), scope)
    return out


def _service(name: str, url: str) -> dict[str, Any]:
    alive, ready, detail = False, False, ""
    with client_for(name, url) as client:
        try:
            client.health()
            alive = True
            ready, checks = client.readiness()
            detail = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
        except ServiceUnavailable:
            detail = "not reachable"
        except ServiceError as exc:
            detail = exc.message
    return {"url": url, "alive": alive, "ready": ready, "detail": detail}


def _last_reconcile(url: str, scope: str) -> dict[str, Any] | None:
    """The last completed reconciliation the service exported: when and how many breaks."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        for metric in RECONCILE_METRICS:
            if line.startswith(f'{metric}{{scope="{scope}"}}'):
                with contextlib.suppress(ValueError):
                    values[metric] = float(line.rsplit(" ", 1)[1])
    at = values.get(RECONCILE_METRICS[0])
    if not at:
        return {"at": None, "breaks": None}
    return {
        "at": datetime.fromtimestamp(at, UTC).isoformat(),
        "breaks": int(values.get(RECONCILE_METRICS[1], 0)),
    }

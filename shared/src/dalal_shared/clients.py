"""Typed HTTP clients of the services' APIs (what the CLI and other services use).

Errors come back as `ServiceError` carrying the service's stable error code, never as a raw
HTTP exception; an unreachable service is a `ServiceUnavailable` (a TemporaryError).
"""

from __future__ import annotations

from typing import Any, Literal, Self, overload
from urllib.parse import quote as _quote

import httpx

from dalal_shared.errors import DalalError, TemporaryError


def quote_path(segment: str) -> str:
    """One path segment, escaped (an id with a slash stays one segment)."""
    return _quote(segment, safe="")


class ServiceError(DalalError):
    """A service answered with its JSON error envelope."""

    def __init__(self, service: str, status_code: int, code: str, message: str):
        super().__init__(f"{service}: {message} ({code})", code=code, status_code=status_code)
        self.service = service


class ServiceUnavailable(TemporaryError):
    code = "service_unavailable"


class ServiceClient:
    """Base client: base URL, bearer key, JSON in and out, errors mapped."""

    service = "service"

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 10.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"{self.service} at {self._http.base_url} is not reachable ({type(exc).__name__})"
            ) from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
                code, message = body.get("error", "http_error"), body.get("message", resp.text)
            except ValueError:
                code, message = "http_error", resp.text[:200]
            raise ServiceError(self.service, resp.status_code, code, message)
        if not resp.content:
            return None
        if "json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.text

    def request_object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """`request` for routes that answer a JSON object (anything else is a bad answer)."""
        body = self.request(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ServiceError(
                self.service, 502, "bad_response", f"{path} answered {type(body).__name__}"
            )
        return body

    def request_list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """`request` for routes that answer a JSON array."""
        body = self.request(method, path, **kwargs)
        if not isinstance(body, list):
            raise ServiceError(
                self.service, 502, "bad_response", f"{path} answered {type(body).__name__}"
            )
        return body

    def health(self) -> dict[str, Any]:
        return self.request_object("GET", "/healthz")

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, per-dependency state); a 503 is an answer here, not an error."""
        try:
            body = self.request("GET", "/readyz")
            return True, body.get("checks", {})
        except ServiceError as exc:
            if exc.status_code != 503:
                raise
            resp = self._http.get("/readyz")
            return False, resp.json().get("checks", {})


class BrokerClient(ServiceClient):
    service = "broker"

    def place_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return self.request_object("POST", "/orders", json=order)

    def session(self) -> dict[str, Any]:
        return self.request_object("GET", "/session")

    def kill_switch(self) -> dict[str, Any]:
        """`GET /kill-switch`: {"engaged": bool, "reason", "by", "at"}."""
        return self.request_object("GET", "/kill-switch")

    def complete_login(self, request_token: str) -> None:
        """What Kite's redirect does: the broker completes the session with the token."""
        self.request("GET", "/session/callback", params={"request_token": request_token})

    def positions(self) -> dict[str, Any]:
        """Kite's positions as the broker passes them through: {"net": [...], "day": [...]}."""
        return self.request_object("GET", "/positions")

    def holdings(self) -> list[dict[str, Any]]:
        """Kite's holdings as the broker passes them through."""
        return self.request_list("GET", "/holdings")

    def trades(self) -> list[dict[str, Any]]:
        """The broker journal's trades with their orders' symbol, side and product."""
        trades: list[dict[str, Any]] = self.request_object("GET", "/trades")["trades"]
        return trades

    def orders(self, *, status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """`GET /orders`: the journal's orders, newest first (optionally of one status)."""
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return self.request_list("GET", "/orders", params=params)

    def order(self, client_order_id: str) -> dict[str, Any]:
        """`GET /orders/{id}`: one order with its trades and charges."""
        return self.request_object("GET", f"/orders/{quote_path(client_order_id)}")

    def cancel(self, client_order_id: str) -> dict[str, Any]:
        return self.request_object("DELETE", f"/orders/{quote_path(client_order_id)}")

    def modify(self, client_order_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """`PATCH /orders/{id}` with quantity / price / trigger_price / order_type."""
        return self.request_object("PATCH", f"/orders/{quote_path(client_order_id)}", json=changes)

    def protections(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """`GET /protections`: the protective GTTs, oldest first (optionally of one status)."""
        return self.request_list("GET", "/protections", params={"status": status} if status else {})

    def protect(self, protection: dict[str, Any]) -> dict[str, Any]:
        """`POST /protections`: keep a stop (and target) for a CNC holding as a GTT."""
        return self.request_object("POST", "/protections", json=protection)

    def unprotect(self, client_order_id: str) -> dict[str, Any]:
        """`DELETE /protections/{id}`: remove the protection's GTT."""
        return self.request_object("DELETE", f"/protections/{quote_path(client_order_id)}")

    def engage_kill_switch(
        self, reason: str, *, cancel_open_orders: bool = False
    ) -> dict[str, Any]:
        body = {"reason": reason, "cancel_open_orders": cancel_open_orders}
        return self.request_object("POST", "/kill-switch/engage", json=body)

    def release_kill_switch(self) -> dict[str, Any]:
        return self.request_object("POST", "/kill-switch/release")

    def status(self) -> dict[str, Any]:
        """`GET /status`: mode, session, kill switch and guards."""
        return self.request_object("GET", "/status")

    def quotes(self, instruments: list[str]) -> dict[str, Any]:
        """`GET /quote?symbols=NSE:INFY,TCS`: {"quotes": [...], "missing": [...]}."""
        return self.request_object("GET", "/quote", params={"symbols": ",".join(instruments)})


class EngineClient(ServiceClient):
    service = "engine"

    def submit_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return self.request_object("POST", "/engine/orders", json=order)

    def order(self, client_order_id: str) -> dict[str, Any]:
        return self.request_object("GET", f"/engine/orders/{quote_path(client_order_id)}")

    def status(self) -> dict[str, Any]:
        """`GET /engine/status`: mode, safety state, market clock, strategies, positions."""
        return self.request_object("GET", "/engine/status")

    def control(self, action: Literal["pause", "resume", "flatten", "start"]) -> dict[str, Any]:
        """`POST /engine/{action}`: the engine's status after the step."""
        return self.request_object("POST", f"/engine/{action}")

    def strategies(self) -> dict[str, Any]:
        """`GET /strategies`: registered strategies and configured instances."""
        return self.request_object("GET", "/strategies")

    def set_strategy_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        action = "enable" if enabled else "disable"
        return self.request_object("POST", f"/strategies/{quote_path(name)}/{action}")


class DataClient(ServiceClient):
    service = "data"

    def candles(
        self, exchange: str, symbol: str, interval: str, from_: str, to: str = ""
    ) -> dict[str, Any]:
        """`GET /candles/{exchange}/{symbol}` as JSON (bounds: yyyy-mm-dd[Thh:mm[:ss]] IST):
        `columns` and `candles` rows [ts (IST ISO), open, high, low, close, volume, oi]."""
        params = {"from": from_, "interval": interval} | ({"to": to} if to else {})
        return self.request_object("GET", f"/candles/{exchange}/{symbol}", params=params)


class PortfolioClient(ServiceClient):
    service = "portfolio"

    def portfolio(self) -> dict[str, Any]:
        """`GET /portfolio`: cash, equity, P&L and capital (money as decimal strings)."""
        return self.request_object("GET", "/portfolio")

    def positions(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        """`GET /positions`: open positions (every one with include_closed)."""
        params = {"include_closed": "true"} if include_closed else {}
        positions: list[dict[str, Any]] = self.request_object("GET", "/positions", params=params)[
            "positions"
        ]
        return positions

    def trades(self) -> list[dict[str, Any]]:
        """`GET /trades`: closed round trips, newest last."""
        trades: list[dict[str, Any]] = self.request_object(
            "GET", "/trades", params={"limit": 10_000}
        )["trades"]
        return trades


CLIENTS: dict[str, type[ServiceClient]] = {
    "broker": BrokerClient,
    "data": DataClient,
    "portfolio": PortfolioClient,
    "engine": EngineClient,
}


@overload
def client_for(
    service: Literal["broker"], base_url: str, *, api_key: str | None = None
) -> BrokerClient: ...
@overload
def client_for(
    service: Literal["data"], base_url: str, *, api_key: str | None = None
) -> DataClient: ...
@overload
def client_for(
    service: Literal["portfolio"], base_url: str, *, api_key: str | None = None
) -> PortfolioClient: ...
@overload
def client_for(
    service: Literal["engine"], base_url: str, *, api_key: str | None = None
) -> EngineClient: ...
@overload
def client_for(service: str, base_url: str, *, api_key: str | None = None) -> ServiceClient: ...
def client_for(service: str, base_url: str, *, api_key: str | None = None) -> ServiceClient:
    """The typed client of `service` (the base client for any other name)."""
    cls = CLIENTS.get(service, ServiceClient)
    client = cls(base_url, api_key=api_key)
    if cls is ServiceClient:
        client.service = service
    return client

"""Worker metrics listeners bind loopback unless the deployment asks for more."""

from __future__ import annotations

import os

import httpx
import psutil

from dalal_shared.testing import free_port
from dalal_shared.workermetrics import serve_metrics


def listening_on(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_metrics_listen_on_loopback_by_default() -> None:
    port = free_port()
    assert serve_metrics(port)
    assert listening_on(port) == {"127.0.0.1"}
    assert "python_info" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_metrics_listen_where_the_deployment_says() -> None:
    port = free_port()
    assert serve_metrics(port, "0.0.0.0")
    assert listening_on(port) == {"0.0.0.0"}


def test_no_port_no_listener() -> None:
    assert serve_metrics(None) is False

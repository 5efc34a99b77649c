"""No image, manifest or compose file holds a secret value: every secret-named setting in
deploy/** and docker-compose.yml is a reference (`${VAR:?message}` in compose, a secretKeyRef
in Kubernetes), never a literal. The Dockerfile side is test_compose.py's
test_no_image_bakes_a_secret; .env.example's blanks are test_compose.py's too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import COMPOSE_FILE, ROOT, SECRET_NAME

DEPLOY = ROOT / "deploy"
# ${VAR:?message}: compose refuses to start without VAR; the only form a secret may take
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}$")
# an optional feature's secret: the user's own variable, empty unless set (never a default)
OPTIONAL_REFERENCE = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*):-\}$")
# names that look secret but hold none
NOT_SECRETS = {"DALAL_KITESIM_POSTBACK_URL"}


def _files() -> list[Path]:
    files = [COMPOSE_FILE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    return sorted(p for p in files if p.suffix in {".yml", ".yaml", ".json", ".env", ""})


def _settings(node: Any, where: str = "") -> Iterator[tuple[str, str, Any]]:
    """(where, NAME, value) for every UPPER_CASE setting in a YAML/JSON tree: mapping entries,
    Kubernetes env entries ({name, value}) and kustomize literals ("NAME=value")."""
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and ("value" in node or "valueFrom" in node):
            yield where, node["name"], node.get("value", node.get("valueFrom"))
        for key, value in node.items():
            if isinstance(key, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
                yield f"{where}.{key}", key, value
            yield from _settings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _settings(item, f"{where}[{i}]")
    elif isinstance(node, str):
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", node)
        if match:
            yield where, match.group(1), match.group(2)


def _env_lines(text: str) -> Iterator[tuple[str, str, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(r"\s*([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            yield f"line {n}", match.group(1), match.group(2)


def _literal_secrets(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".env":
        found = list(_env_lines(text))
    elif path.suffix == ".json":
        found = list(_settings(json.loads(text)))
    elif path.suffix in {".yml", ".yaml"}:
        found = [s for doc in yaml.safe_load_all(text) if doc for s in _settings(doc)]
    else:
        return []
    bad = []
    for where, name, value in found:
        if not SECRET_NAME.search(name) or name in NOT_SECRETS:
            continue
        if isinstance(value, dict) and "secretKeyRef" in value:
            continue
        if isinstance(value, str) and REQUIRED_REFERENCE.match(value):
            continue
        optional = OPTIONAL_REFERENCE.match(value) if isinstance(value, str) else None
        if optional is not None and optional.group("name") == name:
            continue
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        bad.append(f"{shown} {where}: {name} has a literal value")
    return bad


def test_the_scan_covers_compose_kubernetes_prometheus_and_grafana() -> None:
    names = {str(p.relative_to(ROOT)) for p in _files()}
    assert "docker-compose.yml" in names
    assert "deploy/k8s/base/broker.yaml" in names
    assert "deploy/compose/sim.env" in names
    assert "deploy/grafana/dashboards/trading.json" in names


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_holds_a_secret_value(path: Path) -> None:
    assert _literal_secrets(path) == []


def test_the_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    planted = {
        "compose.yml": "services:\n  x:\n    environment:\n      DALAL_API_KEY: hunter2hunter2\n",
        "deploy.yaml": "env:\n  - name: DALAL_SESSION_KEY\n    value: s3cr3t-s3cr3t\n",
        "kustomization.yaml": "configMapGenerator:\n  - literals: [POSTGRES_PASSWORD=pw]\n",
        "mode.env": "DALAL_KITE_API_SECRET=abc\n",
    }
    for name, text in planted.items():
        path = tmp_path / name
        path.write_text(text)
        assert _literal_secrets(path), name

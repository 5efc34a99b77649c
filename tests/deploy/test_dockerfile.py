"""deploy/docker/Dockerfile, read statically (no Docker engine here) plus its health check run
for real against a local HTTP server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import DOCKERFILE, ROOT


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.global_args.get(m.group(1), m.group(0)), text)


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuations joined and comments dropped, split into stages."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = args.partition("=")
                global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


def _uv_syncs(stage: Stage) -> list[str]:
    return [run for run in stage.all("RUN") if "uv sync" in run]


def test_builds_in_stages_onto_python_311_slim(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    assert dockerfile.resolve(dockerfile.final.image) == "python:3.11-slim"
    assert "uv sync" not in " ".join(dockerfile.final.all("RUN"))


def test_uv_comes_from_the_official_image(dockerfile: Dockerfile) -> None:
    images = [dockerfile.resolve(s.image) for s in dockerfile.stages]
    assert any(image.startswith("ghcr.io/astral-sh/uv:") for image in images)
    builder = dockerfile.stage("builder")
    assert any(c.startswith("--from=uv ") and "/uv" in c for c in builder.all("COPY"))


def test_service_is_a_build_argument_of_every_stage_using_it(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        body = " ".join(args for _, args in stage.instructions)
        if "${SERVICE}" in body:
            assert "SERVICE" in stage.all("ARG"), f"stage {stage.name} uses SERVICE undeclared"
    assert "SERVICE" in dockerfile.stage("builder").all("ARG")


def test_installs_exactly_the_locked_packages_of_one_service(dockerfile: Dockerfile) -> None:
    syncs = _uv_syncs(dockerfile.stage("builder"))
    assert syncs
    for run in syncs:
        assert "--mount=type=cache,target=/root/.cache/uv" in run
        assert "uv sync --frozen" in run
        assert "--no-dev" in run
        assert '--package "dalal-${SERVICE}"' in run


def test_lockfile_layer_comes_before_the_source_layer(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stage("builder")
    steps = [f"{kw} {args}" for kw, args in builder.instructions]
    lock = next(i for i, s in enumerate(steps) if s.startswith("COPY") and "uv.lock" in s)
    deps = next(i for i, s in enumerate(steps) if "uv sync" in s)
    sources = next(i for i, s in enumerate(steps) if s.startswith("COPY shared/ "))
    assert lock < deps < sources
    assert "--no-install-workspace" in steps[deps]


def test_every_workspace_member_is_known_to_the_dependency_layer(
    dockerfile: Dockerfile,
) -> None:
    """uv sync --frozen needs every member's pyproject.toml, or the image build fails."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    builder = dockerfile.stage("builder")
    steps = [f"{kw} {args}" for kw, args in builder.instructions]
    first_sync = next(i for i, s in enumerate(steps) if "uv sync" in s)
    copied = {s.split()[1] for s in steps[:first_sync] if s.startswith("COPY ")}
    for member in members:
        assert f"{member}/pyproject.toml" in copied, f"{member} missing from the lock layer"


def test_every_compose_service_maps_to_a_workspace_package(
    dalal_services: dict[str, str],
) -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    for compose_name, service in dalal_services.items():
        assert service, f"{compose_name} is built without a SERVICE argument"
        pyproject = ROOT / "services" / service / "pyproject.toml"
        assert pyproject.is_file(), f"SERVICE={service}: no {pyproject.relative_to(ROOT)}"
        assert tomllib.loads(pyproject.read_text())["project"]["name"] == f"dalal-{service}"
        assert (ROOT / "services" / service / "src" / f"dalal_{service}" / "__init__.py").is_file()
        assert f"services/{service}" in members


def test_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the runtime stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    created = " ".join(dockerfile.final.all("RUN"))
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", created)


def test_starts_the_service_module_as_the_main_process(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    assert "SERVICE" in final.all("ARG")
    assert re.search(r"\bSERVICE=\$\{SERVICE\}", " ".join(final.all("ENV"))), (
        "CMD expands $SERVICE at run time, so the runtime stage must keep it in ENV"
    )
    cmd = json.loads(final.all("CMD")[-1])
    assert cmd[-1].startswith("exec python -m dalal_${SERVICE}")


# ----------------------------------------------------------------- the health check, for real


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Health,), {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    (check,) = dockerfile.final.all("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options
    argv = json.loads(command)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def _run_healthcheck(dockerfile: Dockerfile, port: int) -> int:
    env = {"DALAL_PORT": str(port), "SERVICE": "broker", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        _healthcheck_command(dockerfile), env=env, capture_output=True, timeout=30, check=False
    )
    return proc.returncode


def test_healthcheck_passes_when_healthz_answers(
    dockerfile: Dockerfile, health_server: ThreadingHTTPServer
) -> None:
    assert _run_healthcheck(dockerfile, health_server.server_address[1]) == 0


def test_healthcheck_fails_when_healthz_is_unhealthy(
    dockerfile: Dockerfile, health_server: ThreadingHTTPServer
) -> None:
    health_server.RequestHandlerClass.status = 503  # type: ignore[attr-defined]
    assert _run_healthcheck(dockerfile, health_server.server_address[1]) != 0


def test_healthcheck_fails_when_nothing_listens(
    dockerfile: Dockerfile, health_server: ThreadingHTTPServer
) -> None:
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    assert _run_healthcheck(dockerfile, port) != 0


def test_healthcheck_default_ports_match_compose(
    dockerfile: Dockerfile,
    rendered_compose: dict[str, Any],
    dalal_services: dict[str, str],
) -> None:
    command = " ".join(_healthcheck_command(dockerfile))
    defaults = dict(re.findall(r"'(\w+)': '(\d+)'", command))
    for compose_name, service in dalal_services.items():
        port = rendered_compose["services"][compose_name]["environment"]["DALAL_PORT"]
        assert defaults.get(service) == port, service

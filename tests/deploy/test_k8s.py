"""deploy/k8s: each overlay, as `kubectl kustomize` renders it, passes Kubernetes' schema
(kubernetes-validate, strict) and keeps the promises of the design: probes, resources, PDBs,
secrets only referenced, single writers, HPAs in prod only, a scrape config that finds every
pod without a ServiceMonitor."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, SECRET_NAME, dalal_run_sim_clock, require_tool

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
API_SERVICES = {"broker": 8001, "data": 8002, "portfolio": 8003, "engine": 8004, "console": 8005}
WORKERS = {"data-worker": 8012, "scheduler": 8013, "engine-worker": 8014}
SINGLE_WRITERS = {"broker", "data-ticker", "scheduler", "portfolio"}
HPA_TARGETS = {"data", "data-worker", "engine-worker"}
SECRET = "dalal-secrets"
MONITORING = {"prometheus", "grafana", "alertmanager"}  # single pods of their own kind


def _kustomize(kubectl: str, path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    kubectl = require_tool("kubectl")
    return {name: _kustomize(kubectl, K8S / "overlays" / name) for name in OVERLAYS}


def _of(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _config(docs: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    maps = _of(docs, "ConfigMap")
    (config,) = [d for name, d in maps.items() if name.startswith(f"{prefix}-")]
    return config["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_passes_the_kubernetes_schema(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    problems = []
    for doc in rendered[overlay]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_schema_check_catches_a_broken_manifest(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broker = json.loads(json.dumps(_of(rendered["prod"], "Deployment")["broker"]))
    broker["spec"]["replicas"] = "one"
    _container(broker)["livenessProbe"]["httpGett"] = {"path": "/healthz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broker, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_dalal_workload_has_probes_resources_and_a_pdb(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    deployments = _of(docs, "Deployment")
    assert set(API_SERVICES) | set(WORKERS) | {"data-ticker"} <= set(deployments)
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in _of(docs, "PodDisruptionBudget").values()
    }
    for name, deployment in deployments.items():
        container = _container(deployment)
        limits = container["resources"]
        assert {"cpu", "memory"} <= set(limits["requests"]) and set(limits["limits"]), name
        if name in MONITORING:
            continue
        assert name in pdbs, f"{name} has no PodDisruptionBudget"
        if name in WORKERS:
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"] == "/metrics", name
            assert _env(container)["DALAL_METRICS_PORT"]["value"] == str(WORKERS[name])
        else:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_defined(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert not _of(docs, "Secret"), "a Secret is defined in the manifests"
    for config in _of(docs, "ConfigMap").values():
        for key in config.get("data", {}):
            assert not SECRET_NAME.search(key) or key.endswith((".yml", ".yaml", ".json")), key
    for name, deployment in {**_of(docs, "Deployment"), **_of(docs, "StatefulSet")}.items():
        for var, entry in _env(_container(deployment)).items():
            if SECRET_NAME.search(var):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                assert ref and ref["name"] == SECRET, f"{name}: {var} is not from {SECRET}"
    broker_env = _env(_container(_of(docs, "Deployment")["broker"]))
    for var in ("DALAL_REDIS_URL", "DALAL_DATABASE_URL"):  # they carry passwords
        assert broker_env[var]["valueFrom"]["secretKeyRef"]["name"] == SECRET


def test_dev_runs_its_own_redis_postgres_and_kitesim_in_sim_mode(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = rendered["dev"]
    assert {"redis", "postgres"} <= set(_of(docs, "StatefulSet"))
    assert "kitesim" in _of(docs, "Deployment")
    assert {"redis", "postgres", "kitesim"} <= set(_of(docs, "Service"))
    redis_args = _container(_of(docs, "StatefulSet")["redis"])["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    config = _config(docs, "dalal-config")
    assert config["DALAL_MODE"] == "sim"
    assert config["DALAL_KITE_ROOT_URL"] == "http://kitesim:8010"
    # every pod follows kitesim's clock, as `dalal run` sets it up
    expected = dalal_run_sim_clock(tmp_path)
    assert {k: config.get(k) for k in expected} == expected
    assert not _of(docs, "HorizontalPodAutoscaler")
    assert {d["metadata"]["namespace"] for d in docs} == {"dalal-dev"}


def test_prod_uses_external_stores_and_autoscales_the_stateless_parts(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["prod"]
    assert not _of(docs, "StatefulSet")
    assert not {"redis", "postgres", "kitesim"} & set(_of(docs, "Service"))
    config = _config(docs, "dalal-config")
    assert config["DALAL_MODE"] in {"paper", "live"}
    assert "DALAL_MARKET_CLOCK" not in config  # the wall clock is the exchange's
    assert config["DALAL_KITE_ROOT_URL"] == "https://api.kite.trade"
    hpas = _of(docs, "HorizontalPodAutoscaler")
    deployments = _of(docs, "Deployment")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert targets == HPA_TARGETS
    for name in targets:
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns replicas"
        assert hpas[name]["spec"]["minReplicas"] >= 1
    for pdb in _of(docs, "PodDisruptionBudget").values():
        name = pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        if name == "data":
            assert pdb["spec"]["minAvailable"] == 1  # scaled: one pod always serves


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_single_writers_stay_single(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployments = _of(rendered[overlay], "Deployment")
    for name in SINGLE_WRITERS | {"engine"}:
        spec = deployments[name]["spec"]
        assert spec["strategy"]["type"] == "Recreate", name
        assert spec["replicas"] == 1, name
    for name in HPA_TARGETS:
        assert deployments[name]["spec"]["strategy"]["type"] == "RollingUpdate", name
    # only the ticker holder connects the Kite WebSocket
    assert _env(_container(deployments["data-ticker"]))["DALAL_FEED_ENABLED"]["value"] == "true"
    assert _env(_container(deployments["data"]))["DALAL_FEED_ENABLED"]["value"] == "false"


def _k8s_prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((K8S / "base" / "prometheus.yml").read_text())


def test_prometheus_finds_every_pod_through_headless_services(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["dev"]
    services = _of(docs, "Service")
    jobs = {j["job_name"]: j for j in _k8s_prometheus_config()["scrape_configs"]}
    for name, deployment in _of(docs, "Deployment").items():
        if name in MONITORING:
            continue
        assert name in jobs, f"no scrape job for {name}"
        (sd,) = jobs[name]["dns_sd_configs"]
        (dns_name,) = sd["names"]
        headless = services[dns_name]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        ports = {p["containerPort"] for p in _container(deployment)["ports"]}
        assert sd["port"] in ports, name


def test_k8s_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = (K8S / "base" / "prometheus.yml").read_text()
    rules = "/etc/prometheus/rules/alerts.yml"
    assert rules in config
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "alerts.yml").write_text(
        (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    )
    (tmp_path / "prometheus.yml").write_text(config.replace(rules, "rules/alerts.yml"))
    proc = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _mounted_config(docs: list[dict[str, Any]], deployment: str, path: str) -> dict[str, str]:
    """The data of the ConfigMap mounted at `path` in `deployment`."""
    pod = _of(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
    (mount,) = [m for m in _container_of(pod)["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return _of(docs, "ConfigMap")[volume["configMap"]["name"]]["data"]


def _container_of(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_and_grafana_get_the_repository_files(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    rules = _mounted_config(docs, "prometheus", "/etc/prometheus/rules")
    assert rules == {"alerts.yml": (ROOT / "deploy/prometheus/alerts.yml").read_text()}
    config = _mounted_config(docs, "prometheus", "/etc/prometheus")
    assert config == {"prometheus.yml": (K8S / "base" / "prometheus.yml").read_text()}
    grafana = ROOT / "deploy" / "grafana"
    provider = yaml.safe_load((grafana / "provisioning/dashboards/dalal.yml").read_text())
    dashboards = _mounted_config(docs, "grafana", provider["providers"][0]["options"]["path"])
    assert dashboards == {p.name: p.read_text() for p in (grafana / "dashboards").glob("*.json")}
    datasources = _mounted_config(docs, "grafana", "/etc/grafana/provisioning/datasources")
    assert datasources == {
        "prometheus.yml": (grafana / "provisioning/datasources/prometheus.yml").read_text()
    }
    env = _env(_of(docs, "Deployment")["grafana"]["spec"]["template"]["spec"]["containers"][0])
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == SECRET


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_engine_runs_the_strategies_of_its_configmap(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    from dalal_engine.strategyconfig import load_file

    docs = rendered[overlay]
    env = _env(_container(_of(docs, "Deployment")["engine"]))
    path = Path(env["DALAL_STRATEGIES_FILE"]["value"])
    files = _mounted_config(docs, "engine", str(path.parent))
    text = files[path.name]
    assert text == (K8S / "base" / "strategies.yaml").read_text()
    assert load_file(K8S / "base" / "strategies.yaml")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_data_service_mounts_the_candle_cache(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployments = _of(rendered[overlay], "Deployment")
    for name in ("engine", "engine-worker"):  # bars over the data service's candles API
        spec = deployments[name]["spec"]["template"]["spec"]
        claims = {
            v.get("persistentVolumeClaim", {}).get("claimName") for v in spec.get("volumes", [])
        }
        assert "parquet-cache" not in claims, name
        env = _env(_container(deployments[name]))
        assert env["DALAL_DATA_URL"]["value"] == "http://data:8002", name
        assert "DALAL_CANDLE_CACHE_DIR" not in env, name

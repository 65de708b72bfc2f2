"""Checks of docker-compose.yml, the files it mounts and the backend configs it runs.

The compose file is validated by the real `docker-compose` binary (Debian package `docker-compose`,
which validates offline with `config -q`; no Docker engine is needed). Under CI a missing binary is a
failure, elsewhere a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
# Resource attributes that identify the service: the only ones Loki may turn into index labels.
SERVICE_IDENTITY = {
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
    "host.name",
}


def compose_binary() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "docker-compose is not installed (Debian package `docker-compose`); CI must install it"
            )
        pytest.skip(
            "docker-compose not installed (apt-get install docker-compose) - offline validation skipped"
        )
    return path


def run_compose_config(compose_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [compose_binary(), "-f", str(compose_file), *extra, "config", "-q"],
        cwd=compose_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


# ---- the real validator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    [(), ("--profile", "scale-out"), ("--profile", "shared-store")],
    ids=["default", "scale-out", "shared-store"],
)
def test_compose_validates(profile: tuple[str, ...]) -> None:
    result = run_compose_config(COMPOSE, *profile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["otel-collector"]["ports"] = "4317:4317"  # must be a list
    broken["services"]["tempo"]["not_an_option"] = True
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run_compose_config(path)
    assert result.returncode != 0
    assert "invalid" in (result.stdout + result.stderr).lower()


# ---- mounts, images, ports ------------------------------------------------------------------------


def bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            src = vol.split(":", 1)[0]
            if src.startswith((".", "/", "~")):
                sources.append(src)
        elif isinstance(vol, dict) and vol.get("type") == "bind":
            sources.append(vol["source"])
    return sources


def missing_mounts(compose: dict[str, Any], root: Path) -> list[str]:
    missing = []
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in compose["services"].items():
        for src in bind_sources(svc):
            if not (root / src).exists():
                missing.append(f"{name}: {src}")
        for vol in svc.get("volumes") or []:
            if isinstance(vol, str) and not vol.split(":", 1)[0].startswith((".", "/", "~")):
                if vol.split(":", 1)[0] not in declared:
                    missing.append(f"{name}: named volume {vol.split(':', 1)[0]} is not declared")
        build = svc.get("build")
        if build:
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (context / dockerfile).is_file():
                missing.append(f"{name}: build {context / dockerfile}")
    return missing


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    assert sum(len(bind_sources(s)) for s in compose["services"].values()) >= 7
    assert missing_mounts(compose, REPO) == []


def test_mount_checker_catches_missing_file(compose: dict[str, Any]) -> None:
    compose = json.loads(json.dumps(compose))
    compose["services"]["loki"]["volumes"].append("./deploy/loki/does-not-exist.yaml:/etc/x.yaml:ro")
    compose["services"]["tempo"]["volumes"].append("undeclared-volume:/data")
    problems = missing_mounts(compose, REPO)
    assert any("does-not-exist.yaml" in p for p in problems)
    assert any("undeclared-volume" in p for p in problems)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image or svc.get("build"), name
        if svc.get("build"):
            continue  # built locally from this repository
        repo_, _, tag = image.rpartition(":")
        assert repo_ and re.fullmatch(r"v?\d+(\.\d+)+", tag), (
            f"{name}: image {image!r} is not pinned to a version"
        )
    images = {svc["image"] for svc in compose["services"].values()}
    assert "otel/opentelemetry-collector-contrib:0.161.0" in images


def published_host_ports(compose: dict[str, Any]) -> set[str]:
    ports = set()
    for svc in compose["services"].values():
        for port in svc.get("ports") or []:
            parts = str(port).split(":")
            ports.add(parts[-2] if len(parts) >= 2 else parts[0])
    return ports


def test_published_ports_are_documented(compose: dict[str, Any]) -> None:
    doc = DEPLOY_DOC.read_text()
    ports = published_host_ports(compose)
    assert {"4317", "4318", "8686", "3000"} <= ports
    undocumented = sorted(p for p in ports if not re.search(rf"\b{p}\b", doc))
    assert undocumented == []


# ---- the services speak the project's contract ---------------------------------------------------


def test_receiver_and_demo_commands(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    serve = svc["vfo-receiver"]["command"]
    assert serve[0] == "serve"
    assert serve[serve.index("--grpc-address") + 1] == "0.0.0.0:4317"
    assert serve[serve.index("--http-address") + 1] == "0.0.0.0:8686"
    assert serve[serve.index("--store") + 1] == "/data/vfo-otel.sqlite3"
    demo = svc["demo"]["command"]
    assert demo[0] == "demo"
    assert demo[demo.index("--otlp-endpoint") + 1] == "http://otel-collector:4317"
    assert demo[demo.index("--receiver") + 1] == "vfo-receiver:4317"
    assert svc["demo"]["depends_on"]["vfo-receiver"]["condition"] == "service_healthy"
    shared = svc["vfo-receiver-shared"]["command"]  # N receivers, one PostgreSQL
    assert shared[shared.index("--store") + 1] == "postgresql://vfo:vfo@postgres:5432/vfo"
    assert svc["vfo-receiver-shared"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(svc["vfo-receiver"]["healthcheck"]["test"])


_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")


def resolve_env(value: str, env: dict[str, str]) -> str:
    """Expand the collector's ${env:VAR:-default} references the way the container would see them."""
    return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2)), value)


def collector_target_hosts(config: dict[str, Any], env: dict[str, str]) -> set[str]:
    hosts = set()
    for ecfg in (config.get("exporters") or {}).values():
        ecfg = ecfg or {}
        endpoint = resolve_env(str(ecfg.get("endpoint", "")), env)
        if endpoint:
            hosts.add(re.sub(r"^[a-z]+://", "", endpoint).split("/")[0].rsplit(":", 1)[0])
        dns = (ecfg.get("resolver") or {}).get("dns")
        if dns:
            hosts.add(resolve_env(str(dns["hostname"]), env))
    return hosts


@pytest.mark.parametrize("service", ["otel-collector", "otel-gateway", "otel-collector-shared"])
def test_collector_targets_are_compose_services(compose: dict[str, Any], service: str) -> None:
    svc = compose["services"][service]
    mount = next(v for v in svc["volumes"] if v.startswith("./collector-config/"))
    src, dst = mount.split(":")[:2]
    assert svc["command"] == [f"--config={dst}"]
    config = yaml.safe_load((REPO / src).read_text())
    hosts = collector_target_hosts(config, svc.get("environment") or {})
    assert {"tempo", "loki", "mimir"} <= hosts
    # 127.0.0.1: the collector's own loopback second stage of the metrics path (otlp/metrics_merge).
    hosts.discard("127.0.0.1")
    assert hosts <= set(compose["services"]), hosts - set(compose["services"])


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'^ENTRYPOINT \["vfo-otel"\]', text, re.M)
    assert "pip install" in text
    ignore = (REPO / ".dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!README.md", "!vfo_otel/"):
        assert needed in ignore


# ---- backend configs ------------------------------------------------------------------------------


def test_loki_indexes_only_service_identity() -> None:
    loki = yaml.safe_load((REPO / "deploy/loki/loki.yaml").read_text())
    limits = loki["limits_config"]
    assert limits["allow_structured_metadata"] is True
    otlp = limits["otlp_config"]
    assert otlp["resource_attributes"]["ignore_defaults"] is True
    labels = {
        a
        for rule in otlp["resource_attributes"]["attributes_config"]
        if rule["action"] == "index_label"
        for a in rule.get("attributes", [])
    }
    assert labels and labels <= SERVICE_IDENTITY
    assert not any(
        "regex" in rule and rule["action"] == "index_label"
        for rule in otlp["resource_attributes"]["attributes_config"]
    )
    assert all(rule["action"] in ("structured_metadata", "drop") for rule in otlp.get("log_attributes", []))
    assert loki["schema_config"]["configs"][-1]["schema"] == "v13"  # structured metadata needs v13


def test_mimir_adds_prometheus_suffixes() -> None:
    mimir = yaml.safe_load((REPO / "deploy/mimir/mimir.yaml").read_text())
    # vfo.transitions -> vfo_transitions_total and vfo.duration (s) -> vfo_duration_seconds_* need this.
    assert mimir["limits"]["otel_metric_suffixes_enabled"] is True
    assert mimir["common"]["storage"]["backend"] == "filesystem"


def test_tempo_receives_otlp_grpc_with_local_storage() -> None:
    tempo = yaml.safe_load((REPO / "deploy/tempo/tempo.yaml").read_text())
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    assert tempo["storage"]["trace"]["backend"] == "local"


def test_grafana_datasources_and_dashboard() -> None:
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert {by_uid[u]["type"] for u in ("tempo", "loki", "mimir")} == {"tempo", "loki", "prometheus"}
    # trace -> logs and logs -> trace correlation
    assert by_uid["tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert by_uid["tempo"]["jsonData"]["tracesToLogsV2"]["filterByTraceID"] is True
    [derived] = by_uid["loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == "tempo" and derived["matcherRegex"] == "trace_id"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load(COMPOSE.read_text())
    assert any(v.endswith(f":{path}:ro") for v in compose["services"]["grafana"]["volumes"])

    dash = json.loads((REPO / "deploy/grafana/dashboards/vfo-otel.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "vfo_transitions_total",
        "vfo_duration_seconds_bucket",
        "vfo_nodes_active",
        "vfo_errors_total",
    ):
        assert metric in exprs
    for label in ("vfo_state", "vfo_stage_id", "error_type", "vfo_scope"):
        assert label in exprs
    # Dashboards may only group by allow-listed labels (plus histogram `le`); the receiver's own
    # series (vfo_receiver_*) by their closed label sets.
    allowed = {"vfo_scope", "vfo_pipeline_id", "vfo_stage_id", "vfo_state", "error_type", "le"}
    receiver_labels = {"transport", "signal", "reason", "result", "le"}
    for target in (t for p in dash["panels"] for t in p["targets"]):
        own = "vfo_receiver_" in target["expr"]
        for by in re.findall(r"by \(([^)]*)\)", target["expr"]):
            assert {x.strip() for x in by.split(",")} <= (receiver_labels if own else allowed), by
    # One row of panels for the receiver itself, over the series of GET /metrics (docs/receiver.md).
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["vfo-otel receiver (its own /metrics)"]
    for metric in (
        "vfo_receiver_events_stored_total",
        "vfo_receiver_requests_rejected_total",
        "vfo_receiver_export_duration_seconds_bucket",
        "vfo_receiver_store_commit_duration_seconds_bucket",
        "vfo_receiver_watchers",
        "vfo_receiver_snapshot_cache_requests_total",
        "vfo_receiver_snapshot_cache_entries",
        "vfo_receiver_retention_runs_deleted_total",
    ):
        assert metric in exprs
    for panel in dash["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in by_uid


def test_every_published_port_binds_to_loopback_by_default(compose: dict[str, Any]) -> None:
    """Unauthenticated ports (OTLP ingest, the receiver's API, Grafana, the backends) are not
    published on every interface; docs/deploy.md says how to open them on purpose."""
    for name, svc in compose["services"].items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), (name, port)

"""Static checks of the stock OpenTelemetry Collector configs in collector-config/.

No collector binary runs here: these tests parse the YAML and check what the collector itself would
check at start-up (every referenced component is defined, every component type exists in the pinned
contrib release and supports the pipeline's signal), plus this project's own rules: memory_limiter
first, persistent per-exporter queues with endless retries, the vfo-otel receiver on its default
port and never in a metrics pipeline, and metrics reduced to the label allow-list and re-aggregated.
The metric processors are also executed on sample data by a small model of the two OTTL functions
they use, driven by the attribute lists parsed from the config.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

# Data-point attribute keys a vfo metric may carry. Source of truth: vfo_otel/contract/conventions.py;
# keep this one constant in step with it (or replace it with an import from there).
ALLOWED_METRIC_ATTRIBUTES: tuple[str, ...] = (
    "vfo.scope",
    "vfo.pipeline.id",
    "vfo.stage.id",
    "vfo.state",
    "error.type",
    "otel.metric.overflow",
)
# `vfo-otel serve` default gRPC port (OTLP TraceService + LogsService + SnapshotService).
VFO_RECEIVER_GRPC_PORT = 4317

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
CONFIG_FILES = ("otelcol.yaml", "otelcol-loadbalancing.yaml")
COMPONENTS_FILE = Path(__file__).resolve().parent / "data" / "otelcol-contrib-0.161.0-components.txt"
SIGNALS = ("traces", "metrics", "logs")
KINDS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "extensions": "extension",
    "connectors": "connector",
}


# --------------------------------------------------------------------------------------------------
# The pinned release's component catalogue


class Catalog:
    def __init__(
        self,
        types: dict[tuple[str, str], frozenset[str]],
        deprecated: dict[tuple[str, str], str],
        source: str,
    ) -> None:
        self.types = types
        self.deprecated = deprecated
        self.source = source


def load_catalog(path: Path = COMPONENTS_FILE) -> Catalog:
    types: dict[tuple[str, str], frozenset[str]] = {}
    deprecated: dict[tuple[str, str], str] = {}
    source_lines = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            source_lines.append(line)
            continue
        parts = line.split()
        if parts[0] == "deprecated":
            _, kind, old, new = parts
            deprecated[(kind, old)] = new
        else:
            kind, ctype, signals = parts
            types[(kind, ctype)] = frozenset() if signals == "-" else frozenset(signals.split(","))
    return Catalog(types, deprecated, "\n".join(source_lines))


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


# --------------------------------------------------------------------------------------------------
# Structural checker


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def check_structure(cfg: dict[str, Any], catalog: Catalog) -> list[str]:
    """Problems the collector would reject at start-up, plus this project's pipeline rules."""
    problems: list[str] = []
    sections = {name: (cfg.get(name) or {}) for name in KINDS}
    service = cfg.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines is empty")

    # Every defined component has a type of the pinned release (and not a deprecated alias).
    for section, kind in KINDS.items():
        for cid in sections[section]:
            ctype = component_type(cid)
            if (kind, ctype) in catalog.deprecated:
                problems.append(
                    f"{kind} {cid!r}: {ctype!r} is a deprecated alias, use "
                    f"{catalog.deprecated[(kind, ctype)]!r}"
                )
            elif (kind, ctype) not in catalog.types:
                problems.append(f"{kind} {cid!r}: type {ctype!r} is not in the pinned contrib release list")

    enabled_extensions = _as_list(service.get("extensions"))
    for ext in enabled_extensions:
        if ext not in sections["extensions"]:
            problems.append(f"service.extensions references undefined extension {ext!r}")
    if not any(component_type(e) == "health_check" for e in enabled_extensions):
        problems.append("health_check extension is not enabled")

    used: dict[str, set[str]] = {s: set() for s in ("receivers", "processors", "exporters")}
    for pid, pipeline in pipelines.items():
        signal = component_type(pid)
        if signal not in SIGNALS:
            problems.append(f"pipeline {pid!r}: unknown signal {signal!r}")
            continue
        pipeline = pipeline or {}
        for role in ("receivers", "processors", "exporters"):
            ids = _as_list(pipeline.get(role))
            if role != "processors" and not ids:
                problems.append(f"pipeline {pid!r}: no {role}")
            for cid in ids:
                used[role].add(cid)
                kind = KINDS[role]
                defined_in = role
                if cid not in sections[role] and role != "processors" and cid in sections["connectors"]:
                    kind, defined_in = "connector", "connectors"
                if cid not in sections[defined_in]:
                    problems.append(f"pipeline {pid!r}: {role[:-1]} {cid!r} is not defined")
                    continue
                signals = catalog.types.get((kind, component_type(cid)))
                if signals is not None and signal not in signals:
                    problems.append(f"pipeline {pid!r}: {kind} {cid!r} does not support signal {signal!r}")
        processors = _as_list(pipeline.get("processors"))
        if not processors or component_type(processors[0]) != "memory_limiter":
            problems.append(f"pipeline {pid!r}: memory_limiter must be the first processor")

    for role in used:
        for cid in sections[role]:
            if cid not in used[role]:
                problems.append(f"{role[:-1]} {cid!r} is defined but used by no pipeline")

    # Exporters: own persistent queue, batching, endless retries, never blocking the fan-out.
    for eid, ecfg in sections["exporters"].items():
        problems += check_exporter_queue(eid, ecfg or {}, sections["extensions"], enabled_extensions)
    return problems


def check_exporter_queue(
    eid: str, ecfg: dict[str, Any], extensions: dict[str, Any], enabled_extensions: list[str]
) -> list[str]:
    problems = []
    queue = ecfg.get("sending_queue")
    if not isinstance(queue, dict) or queue.get("enabled") is False:
        return [f"exporter {eid!r}: sending_queue must be configured and enabled"]
    storage = queue.get("storage")
    if not storage:
        problems.append(f"exporter {eid!r}: sending_queue.storage is not set (queue would not be persistent)")
    elif storage not in extensions or component_type(storage) != "file_storage":
        problems.append(f"exporter {eid!r}: sending_queue.storage {storage!r} is not a defined file_storage")
    elif storage not in enabled_extensions:
        problems.append(
            f"exporter {eid!r}: storage extension {storage!r} is not enabled in service.extensions"
        )
    if queue.get("block_on_overflow") is True or queue.get("wait_for_result") is True:
        problems.append(f"exporter {eid!r}: a blocking queue lets one slow sink stall the others")
    # The metrics path's loopback hand-over must NOT batch (docs/deploy.md, item 4 of issue 14):
    # one request per first-stage request, so each series gets one arrival time per request.
    if eid == "otlp_grpc/metrics_merge":
        if "batch" in queue or queue.get("num_consumers") != 1:
            problems.append(f"exporter {eid!r}: must send one request at a time, unbatched")
    elif not isinstance(queue.get("batch"), dict):
        problems.append(f"exporter {eid!r}: sending_queue.batch is not configured")
    retry = ecfg.get("retry_on_failure")
    if not isinstance(retry, dict) or retry.get("enabled") is False:
        problems.append(f"exporter {eid!r}: retry_on_failure must be enabled")
    elif retry.get("max_elapsed_time") not in (0, "0", "0s"):
        problems.append(f"exporter {eid!r}: retry_on_failure.max_elapsed_time must be 0 (never drop)")
    return problems


# --------------------------------------------------------------------------------------------------
# vfo-otel receiver routing

_ENV_DEFAULT = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def resolve_env_defaults(value: str) -> str:
    return _ENV_DEFAULT.sub(lambda m: m.group(1), value)


def endpoint_port(endpoint: str) -> int | None:
    endpoint = resolve_env_defaults(endpoint)
    endpoint = re.sub(r"^[a-z]+://", "", endpoint).split("/", 1)[0]
    _host, sep, port = endpoint.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def receiver_exporters(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Exporters that deliver to the vfo-otel receiver (by name or by load balancing to it)."""
    return {
        eid: (ecfg or {})
        for eid, ecfg in (cfg.get("exporters") or {}).items()
        if "vfo_receiver" in eid or component_type(eid) == "load_balancing"
    }


def check_receiver_routing(cfg: dict[str, Any], port: int = VFO_RECEIVER_GRPC_PORT) -> list[str]:
    problems = []
    exporters = receiver_exporters(cfg)
    if not exporters:
        return ["no exporter delivers to the vfo-otel receiver"]
    for eid, ecfg in exporters.items():
        if component_type(eid) == "load_balancing":
            # Not traceID: contrib 0.161.0 hashes a span's trace id as raw bytes and a log record's as
            # hex, so one run's spans and logs could reach different replicas (tests/upstream).
            if ecfg.get("routing_key") != "attributes" or ecfg.get("routing_attributes") != ["vfo.run.id"]:
                problems.append(
                    f"{eid!r}: routing_key must be attributes on [vfo.run.id] (one run -> one replica)"
                )
            if "otlp" not in (ecfg.get("protocol") or {}):
                problems.append(f"{eid!r}: protocol must be otlp (gRPC)")
            resolver = ecfg.get("resolver") or {}
            ports: list[int | None] = []
            if "dns" in resolver:
                raw = str((resolver["dns"] or {}).get("port", ""))
                ports.append(int(raw) if raw.isdigit() else None)
            if "static" in resolver:
                ports += [endpoint_port(h) for h in (resolver["static"] or {}).get("hostnames", [])]
            if not ports:
                problems.append(f"{eid!r}: resolver must be dns or static")
        else:
            if component_type(eid) != "otlp_grpc":
                problems.append(f"{eid!r}: the receiver speaks OTLP gRPC only; use an otlp_grpc exporter")
            ports = [endpoint_port(str(ecfg.get("endpoint", "")))]
        for p in ports:
            if p != port:
                problems.append(f"{eid!r}: port {p} is not the vfo-otel receiver's default gRPC port {port}")

    pipelines = (cfg.get("service") or {}).get("pipelines") or {}
    processors = cfg.get("processors") or {}
    for pid, pipeline in pipelines.items():
        pipeline = pipeline or {}
        targets = [e for e in _as_list(pipeline.get("exporters")) if e in exporters]
        if not targets:
            continue
        signal = component_type(pid)
        if signal == "metrics":
            problems.append(f"pipeline {pid!r}: the vfo-otel receiver has no MetricsService")
        if signal == "logs":
            conds = [
                c
                for p in _as_list(pipeline.get("processors"))
                if component_type(p) == "filter"
                for c in (((processors.get(p) or {}).get("logs") or {}).get("log_record") or [])
            ]
            if not any(re.search(r'attributes\["vfo\.event\.id"\]\s*==\s*nil', c) for c in conds):
                problems.append(
                    f"pipeline {pid!r}: logs to the receiver must be filtered to vfo events "
                    "(drop records without vfo.event.id)"
                )
    for signal in ("traces", "logs"):
        if not any(
            component_type(pid) == signal
            and any(e in exporters for e in _as_list((pl or {}).get("exporters")))
            for pid, pl in pipelines.items()
        ):
            problems.append(f"no {signal} pipeline delivers to the vfo-otel receiver")
    return problems


# --------------------------------------------------------------------------------------------------
# Metric allow-list: parse the transform statements and execute them on a model of OTLP metrics

_AGG = re.compile(
    r'^aggregate_on_attributes\("(?P<fn>\w+)",\s*\[(?P<keys>[^\]]*)\]\)(?:\s+where\s+(?P<where>.+))?$'
)
_KEEP = re.compile(
    r"^keep_keys\((?:datapoint\.)?attributes,\s*\[(?P<keys>[^\]]*)\]\)(?:\s+where\s+(?P<where>.+))?$"
)
# transform/drop_process_identity: resource attributes only, never a data point's (docs/deploy.md).
_DROP_INSTANCE = 'delete_key(resource.attributes, "service.instance.id")'
_TYPE_COND = re.compile(r"metric\.type\s*==\s*METRIC_DATA_TYPE_(\w+)")
OTLP_TYPES = {"SUM", "GAUGE", "HISTOGRAM", "EXPONENTIAL_HISTOGRAM", "SUMMARY"}


def _keys(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def _where_types(where: str | None) -> set[str]:
    """Metric types a `where` clause selects; only disjunctions of metric.type tests are understood."""
    if where is None:
        return set(OTLP_TYPES)
    terms = [t.strip() for t in re.split(r"\s+or\s+", where)]
    types = set()
    for term in terms:
        m = _TYPE_COND.fullmatch(term)
        if not m:
            raise ValueError(f"unsupported where clause: {where!r}")
        types.add(m.group(1))
    return types


def metric_operations(cfg: dict[str, Any], pipeline_id: str) -> list[tuple[str, set[str], list[str]]]:
    """The (operation, metric types, keys) steps of a metrics pipeline's transform processors, in order.

    Raises ValueError on any statement the model does not understand, so an unmodelled statement can
    never make the check pass by accident.
    """
    pipeline = ((cfg.get("service") or {}).get("pipelines") or {})[pipeline_id] or {}
    ops: list[tuple[str, set[str], list[str]]] = []
    for pid in _as_list(pipeline.get("processors")):
        if component_type(pid) != "transform":
            continue
        pcfg = (cfg.get("processors") or {}).get(pid) or {}
        for group in pcfg.get("metric_statements") or []:
            context = group.get("context")
            for stmt in group.get("statements") or []:
                stmt = " ".join(stmt.split())
                if context == "metric" and (m := _AGG.match(stmt)):
                    if m.group("fn") != "sum":
                        raise ValueError(f"re-aggregation must sum, not {m.group('fn')!r}: {stmt}")
                    ops.append(("aggregate", _where_types(m.group("where")), _keys(m.group("keys"))))
                elif context == "datapoint" and (m := _KEEP.match(stmt)):
                    ops.append(("keep", _where_types(m.group("where")), _keys(m.group("keys"))))
                elif context == "resource" and stmt == _DROP_INSTANCE:
                    pass  # the per-process identity (issue 14 item 4): no data-point attribute changes
                else:
                    raise ValueError(f"statement not understood by the model ({context}): {stmt}")
    return ops


def apply_metric_operations(
    ops: Iterable[tuple[str, set[str], list[str]]], metrics: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Model of aggregate_on_attributes / keep_keys on OTLP metrics.

    A metric is {"name", "type" (SUM|HISTOGRAM|GAUGE|...), "points": [{"attributes", "time", "value"}]};
    histogram values are {"count", "sum", "buckets": [...]}. Like the contrib aggregateutil, points are
    grouped by (remaining attributes, timestamp) and sums / counts / bucket counts are added.
    """
    out = copy.deepcopy(metrics)
    for op, types, keys in ops:
        for metric in out:
            if metric["type"] not in types:
                continue
            for point in metric["points"]:
                point["attributes"] = {k: v for k, v in point["attributes"].items() if k in keys}
            if op != "aggregate":
                continue
            groups: dict[tuple[Any, ...], dict[str, Any]] = {}
            for point in metric["points"]:
                key = (tuple(sorted(point["attributes"].items())), point["time"])
                if key not in groups:
                    groups[key] = copy.deepcopy(point)
                    continue
                acc = groups[key]
                if metric["type"] == "HISTOGRAM":
                    acc["value"]["count"] += point["value"]["count"]
                    acc["value"]["sum"] += point["value"]["sum"]
                    acc["value"]["buckets"] = [
                        a + b for a, b in zip(acc["value"]["buckets"], point["value"]["buckets"], strict=True)
                    ]
                else:
                    acc["value"] += point["value"]
            metric["points"] = list(groups.values())
    return out


def check_metric_allowlist(
    cfg: dict[str, Any], allowed: Iterable[str] = ALLOWED_METRIC_ATTRIBUTES
) -> list[str]:
    allowed = set(allowed)
    problems = []
    pipelines = (cfg.get("service") or {}).get("pipelines") or {}
    # Pipelines fed by the OTLP ingress. metrics/merge (issue 14) is fed only by the first stage over
    # loopback, i.e. by data that already went through the allow-list.
    metric_pipelines = [
        pid
        for pid in pipelines
        if component_type(pid) == "metrics" and "otlp" in _as_list((pipelines[pid] or {}).get("receivers"))
    ]
    for pid in pipelines:
        if component_type(pid) == "metrics" and pid not in metric_pipelines:
            for rid in _as_list((pipelines[pid] or {}).get("receivers")):
                rcfg = (cfg.get("receivers") or {}).get(rid) or {}
                grpc = (rcfg.get("protocols") or {}).get("grpc") or {}
                if not resolve_env_defaults(str(grpc.get("endpoint", ""))).startswith("127.0.0.1:"):
                    problems.append(f"pipeline {pid!r}: receiver {rid!r} is not loopback-only")
    if not metric_pipelines:
        return ["no metrics pipeline"]
    for pid in metric_pipelines:
        try:
            ops = metric_operations(cfg, pid)
        except ValueError as exc:
            problems.append(f"pipeline {pid!r}: {exc}")
            continue
        keep_all = [keys for op, types, keys in ops if op == "keep" and types == OTLP_TYPES]
        if not keep_all:
            problems.append(f"pipeline {pid!r}: no unconditional keep_keys on data-point attributes")
        for keys in keep_all:
            if extra := set(keys) - allowed:
                problems.append(f"pipeline {pid!r}: keep_keys lets through {sorted(extra)}")
        aggregated: set[str] = set()
        for op, types, keys in ops:
            if op == "aggregate":
                aggregated |= types
                if extra := set(keys) - allowed:
                    problems.append(f"pipeline {pid!r}: aggregate_on_attributes keeps {sorted(extra)}")
        if missing := {"SUM", "HISTOGRAM", "EXPONENTIAL_HISTOGRAM"} - aggregated:
            problems.append(
                f"pipeline {pid!r}: dropped attributes are not re-aggregated for {sorted(missing)}"
            )
        # Execute the pipeline's statements on data that carries forbidden attributes.
        result = apply_metric_operations(ops, sample_metrics())
        for metric in result:
            for point in metric["points"]:
                if extra := set(point["attributes"]) - allowed:
                    problems.append(f"pipeline {pid!r}: {metric['name']} still carries {sorted(extra)}")
            series = [(tuple(sorted(p["attributes"].items())), p["time"]) for p in metric["points"]]
            if len(series) != len(set(series)):
                problems.append(
                    f"pipeline {pid!r}: {metric['name']} has duplicate series after the processors"
                )
    return problems


def sample_metrics() -> list[dict[str, Any]]:
    """One SDK export: ids that must never be labels sneak in beside allowed attributes."""
    t = 1_700_000_000_000_000_000
    node = {"vfo.scope": "node", "vfo.pipeline.id": "p1", "vfo.stage.id": "encode"}
    return [
        {
            "name": "vfo.transitions",
            "type": "SUM",
            "points": [
                {
                    "attributes": {**node, "vfo.state": "complete", "vfo.run.id": "r1", "vfo.node.id": "n1"},
                    "time": t,
                    "value": 2,
                },
                {
                    "attributes": {**node, "vfo.state": "complete", "vfo.run.id": "r2", "vfo.asset.id": "a9"},
                    "time": t,
                    "value": 3,
                },
                {
                    "attributes": {
                        **node,
                        "vfo.state": "failed",
                        "vfo.attempt.id": "x",
                        "error.type": "Timeout",
                    },
                    "time": t,
                    "value": 1,
                },
            ],
        },
        {
            "name": "vfo.duration",
            "type": "HISTOGRAM",
            "points": [
                {
                    "attributes": {**node, "vfo.state": "complete", "process.command_line": "ffmpeg -i a"},
                    "time": t,
                    "value": {"count": 2, "sum": 3.0, "buckets": [1, 1, 0]},
                },
                {
                    "attributes": {**node, "vfo.state": "complete", "process.command_line": "ffmpeg -i b"},
                    "time": t,
                    "value": {"count": 1, "sum": 9.0, "buckets": [0, 0, 1]},
                },
            ],
        },
        {
            "name": "vfo.nodes.active",
            "type": "SUM",
            "points": [
                {"attributes": {**node, "host.name": "h1"}, "time": t, "value": 1},
                {"attributes": {**node, "host.name": "h2"}, "time": t, "value": 2},
            ],
        },
    ]


# --------------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def load_config(name: str) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load((CONFIG_DIR / name).read_text())
    return cfg


def test_component_list_names_its_source(catalog: Catalog) -> None:
    assert "opentelemetry-collector-releases" in catalog.source
    assert "distributions/otelcol-contrib/manifest.yaml" in catalog.source
    assert "v0.156.0" in catalog.source
    assert "0.161.0" in catalog.source
    # The renamed core exporters are listed under their new names, the old ones as deprecated.
    assert ("exporter", "otlp_grpc") in catalog.types and ("exporter", "otlp_http") in catalog.types
    assert catalog.deprecated[("exporter", "otlp")] == "otlp_grpc"
    assert catalog.deprecated[("exporter", "loadbalancing")] == "load_balancing"


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_structure(name: str, catalog: Catalog) -> None:
    assert check_structure(load_config(name), catalog) == []


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_receiver_routing(name: str) -> None:
    assert check_receiver_routing(load_config(name)) == []


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_metric_allowlist(name: str) -> None:
    assert check_metric_allowlist(load_config(name)) == []


def test_every_sink_has_its_own_exporter() -> None:
    cfg = load_config("otelcol.yaml")
    pipelines = cfg["service"]["pipelines"]
    by_signal: dict[str, set[str]] = {}
    for pid, pl in pipelines.items():
        by_signal.setdefault(component_type(pid), set()).update(pl["exporters"])
    assert by_signal["traces"] == {"otlp_grpc/tempo", "otlp_grpc/vfo_receiver"}
    assert by_signal["logs"] == {"otlp_http/loki", "otlp_grpc/vfo_receiver"}
    # metrics: first stage -> the collector's own loopback second stage (metrics/merge) -> Mimir
    assert by_signal["metrics"] == {"otlp_grpc/metrics_merge", "otlp_http/mimir"}
    assert pipelines["metrics"]["exporters"] == ["otlp_grpc/metrics_merge"]
    assert pipelines["metrics/merge"]["receivers"] == ["otlp/metrics_merge"]
    assert pipelines["metrics/merge"]["exporters"] == ["otlp_http/mimir"]
    endpoints = {eid: resolve_env_defaults(e["endpoint"]) for eid, e in cfg["exporters"].items()}
    assert endpoints["otlp_http/loki"] == "http://loki:3100/otlp"
    assert endpoints["otlp_http/mimir"] == "http://mimir:9009/otlp"
    assert endpoints["otlp_grpc/tempo"] == "tempo:4317"
    merge_receiver = cfg["receivers"]["otlp/metrics_merge"]["protocols"]["grpc"]["endpoint"]
    assert endpoints["otlp_grpc/metrics_merge"] == resolve_env_defaults(merge_receiver) == "127.0.0.1:4319"
    assert cfg["exporters"]["otlp_grpc/metrics_merge"]["sending_queue"]["num_consumers"] == 1


def test_loadbalancing_variant_matches_base_for_backends() -> None:
    base, lb = load_config("otelcol.yaml"), load_config("otelcol-loadbalancing.yaml")
    for eid in ("otlp_grpc/tempo", "otlp_http/loki", "otlp_http/mimir"):
        assert lb["exporters"][eid] == base["exporters"][eid]
    assert lb["processors"]["transform/metric_allowlist"] == base["processors"]["transform/metric_allowlist"]
    lb_exp = lb["exporters"]["load_balancing/vfo_receivers"]
    # Per-replica sub-exporters hand failures back to the persistent top-level queue.
    assert lb_exp["protocol"]["otlp"]["sending_queue"]["enabled"] is False
    assert lb_exp["protocol"]["otlp"]["retry_on_failure"]["enabled"] is False


def test_processors_reaggregate_correctly() -> None:
    ops = metric_operations(load_config("otelcol.yaml"), "metrics")
    out = {m["name"]: m for m in apply_metric_operations(ops, sample_metrics())}
    transitions = {p["attributes"]["vfo.state"]: p["value"] for p in out["vfo.transitions"]["points"]}
    assert transitions == {"complete": 5, "failed": 1}
    [hist] = out["vfo.duration"]["points"]
    assert hist["value"] == {"count": 3, "sum": 12.0, "buckets": [1, 1, 1]}
    [active] = out["vfo.nodes.active"]["points"]
    assert active["value"] == 3 and "host.name" not in active["attributes"]


# ---- negative tests: the checkers catch broken configs -------------------------------------------


def _mutate(name: str, fn: Any) -> dict[str, Any]:
    cfg = load_config(name)
    fn(cfg)
    return cfg


STRUCTURE_MUTATIONS = {
    "undefined exporter": (
        lambda c: c["service"]["pipelines"]["traces"]["exporters"].append("otlp_grpc/nowhere"),
        "is not defined",
    ),
    "deprecated otlp alias": (lambda c: c["exporters"].__setitem__("otlp/old", {}), "deprecated alias"),
    "type not in release": (
        lambda c: c["processors"].__setitem__("cardinality_magic", {}),
        "not in the pinned contrib release",
    ),
    "wrong signal": (
        lambda c: (
            c["processors"].__setitem__("tail_sampling", {}),
            c["service"]["pipelines"]["metrics"]["processors"].append("tail_sampling"),
        ),
        "does not support signal 'metrics'",
    ),
    "memory_limiter not first": (
        lambda c: c["service"]["pipelines"]["metrics"]["processors"].reverse(),
        "memory_limiter must be the first",
    ),
    "in-memory queue": (
        lambda c: c["exporters"]["otlp_http/loki"]["sending_queue"].pop("storage"),
        "queue would not be persistent",
    ),
    "retries give up": (
        lambda c: c["exporters"]["otlp_grpc/tempo"]["retry_on_failure"].__setitem__(
            "max_elapsed_time", "300s"
        ),
        "never drop",
    ),
    "blocking queue": (
        lambda c: c["exporters"]["otlp_http/mimir"]["sending_queue"].__setitem__("block_on_overflow", True),
        "stall the others",
    ),
    "storage not enabled": (
        lambda c: c["service"]["extensions"].remove("file_storage/queue"),
        "not enabled in service.extensions",
    ),
    "unused component": (lambda c: c["processors"].__setitem__("batch", {}), "used by no pipeline"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_MUTATIONS))
def test_structure_checker_catches(case: str, catalog: Catalog) -> None:
    mutate, expected = STRUCTURE_MUTATIONS[case]
    problems = check_structure(_mutate("otelcol.yaml", mutate), catalog)
    assert any(expected in p for p in problems), problems


RECEIVER_MUTATIONS = {
    "wrong port": (
        lambda c: c["exporters"]["otlp_grpc/vfo_receiver"].__setitem__("endpoint", "vfo-receiver:4318"),
        "not the vfo-otel receiver's default gRPC port",
    ),
    "metrics to receiver": (
        lambda c: c["service"]["pipelines"]["metrics"]["exporters"].append("otlp_grpc/vfo_receiver"),
        "no MetricsService",
    ),
    "unfiltered logs": (
        lambda c: c["service"]["pipelines"]["logs/vfo"]["processors"].remove("filter/vfo_events_only"),
        "filtered to vfo events",
    ),
    "http exporter": (
        lambda c: c["exporters"].__setitem__(
            "otlp_http/vfo_receiver", {"endpoint": "http://vfo-receiver:4317"}
        ),
        "OTLP gRPC only",
    ),
}


@pytest.mark.parametrize("case", sorted(RECEIVER_MUTATIONS))
def test_receiver_checker_catches(case: str) -> None:
    mutate, expected = RECEIVER_MUTATIONS[case]
    problems = check_receiver_routing(_mutate("otelcol.yaml", mutate))
    assert any(expected in p for p in problems), problems


def test_receiver_checker_catches_wrong_routing_key() -> None:
    cfg = _mutate(
        "otelcol-loadbalancing.yaml",
        lambda c: c["exporters"]["load_balancing/vfo_receivers"].__setitem__("routing_key", "service"),
    )
    assert any("routing_key must be attributes" in p for p in check_receiver_routing(cfg))
    cfg = _mutate(
        "otelcol-loadbalancing.yaml",
        lambda c: c["exporters"]["load_balancing/vfo_receivers"].__setitem__("routing_key", "traceID"),
    )
    assert any("routing_key must be attributes" in p for p in check_receiver_routing(cfg))
    cfg = _mutate(
        "otelcol-loadbalancing.yaml",
        lambda c: c["exporters"]["load_balancing/vfo_receivers"]["resolver"]["dns"].__setitem__(
            "port", "4000"
        ),
    )
    assert any("port 4000" in p for p in check_receiver_routing(cfg))


def _statements(cfg: dict[str, Any], context: str) -> list[str]:
    groups = cfg["processors"]["transform/metric_allowlist"]["metric_statements"]
    statements: list[str] = next(g for g in groups if g["context"] == context)["statements"]
    return statements


ALLOWLIST_MUTATIONS = {
    "run id allowed through": (
        lambda c: _statements(c, "datapoint").__setitem__(
            0, _statements(c, "datapoint")[0].replace('"error.type"', '"error.type", "vfo.run.id"')
        ),
        "vfo.run.id",
    ),
    "no re-aggregation": (lambda c: _statements(c, "metric").clear(), "not re-aggregated"),
    "no keep_keys": (lambda c: _statements(c, "datapoint").clear(), "no unconditional keep_keys"),
    "keep_keys only for one metric": (
        lambda c: _statements(c, "datapoint").__setitem__(
            0, _statements(c, "datapoint")[0] + ' where metric.name == "vfo.transitions"'
        ),
        "unsupported where clause",
    ),
    "aggregate with max": (
        lambda c: _statements(c, "metric").__setitem__(
            0, _statements(c, "metric")[0].replace('("sum"', '("max"')
        ),
        "must sum",
    ),
    "transform removed from pipeline": (
        lambda c: c["service"]["pipelines"]["metrics"]["processors"].remove("transform/metric_allowlist"),
        "still carries",
    ),
}


@pytest.mark.parametrize("case", sorted(ALLOWLIST_MUTATIONS))
def test_allowlist_checker_catches(case: str) -> None:
    mutate, expected = ALLOWLIST_MUTATIONS[case]
    problems = check_metric_allowlist(_mutate("otelcol.yaml", mutate))
    assert any(expected in p for p in problems), problems


def test_allowlist_is_the_configured_one() -> None:
    """The lists in the YAML are exactly the allow-list (none missing, none extra)."""
    for name in CONFIG_FILES:
        ops = metric_operations(load_config(name), "metrics")
        assert ops, name
        for _, _, keys in ops:
            assert sorted(keys) == sorted(ALLOWED_METRIC_ATTRIBUTES), (name, keys)

"""The ``vfo-otel`` command line (click).

Every option can also be set by environment variable ``VFO_OTEL_<COMMAND>_<PARAMETER>``,
named after the option's parameter (e.g. ``VFO_OTEL_SERVE_STORE_PATH`` for ``--store``,
``VFO_OTEL_SERVE_GRPC_ADDRESS``); OTLP exporters also honour the standard ``OTEL_*``
variables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import click
import grpc
from google.protobuf import json_format

from vfo_otel.contract import STATES, state_number
from vfo_otel.receiver import (
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    DEFAULT_OTLP_HTTP_ADDRESS,
    ReceiverConfig,
)

__all__ = ["main"]



#: How long `vfo-otel exec` gives its exports (seconds): a short-lived process does not retry.
EXEC_EXPORT_TIMEOUT_S = 1.5


def _default(name: str) -> Any:
    """The default of a ReceiverConfig field: the CLI shows and uses the config model's own."""
    return ReceiverConfig.model_fields[name].default


def _config(**kw: Any) -> ReceiverConfig:
    try:
        return ReceiverConfig(**{k: v for k, v in kw.items() if v is not None or k == "http_address"})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _token(token_file: str | None) -> str | None:
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get("VFO_OTEL_AUTH_TOKEN") or None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "VFO_OTEL"})
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level of vfo-otel's own log.",
)
@click.version_option(package_name="vfo-otel")
def main(log_level: str) -> None:
    """vfo-otel: one canonical pipeline-run event model, observed through OpenTelemetry.

    \b
    Start here:
      vfo-otel demo        run a real demo pipeline against an embedded receiver
      vfo-otel serve       run the receiver (OTLP in, dashboard snapshot out)
      vfo-otel exec ...    run one command as a node attempt of a pipeline
      vfo-otel runs        list runs known to a receiver
      vfo-otel snapshot    print a run's snapshot (summary or JSON)
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _receiver_options(f: Any) -> Any:
    options = [
        click.option(
            "--grpc-address",
            default=DEFAULT_GRPC_ADDRESS,
            show_default=True,
            help="Bind address of OTLP/gRPC ingest + SnapshotService + health (port 0: any).",
        ),
        click.option(
            "--http-address",
            default=DEFAULT_HTTP_ADDRESS,
            show_default=True,
            help="Bind address of the JSON API, live stream and dashboard.",
        ),
        click.option("--no-http", is_flag=True, help="Do not start the HTTP server."),
        click.option(
            "--store",
            "store_path",
            default=_default("store_path"),
            show_default=True,
            type=click.Path(dir_okay=False),
            help="Event store: a SQLite file (':memory:' keeps nothing) or a postgresql:// URL"
            " (one database shared by any number of receivers).",
        ),
        click.option(
            "--retention-runs",
            type=click.IntRange(min=1),
            default=_default("retention_runs"),
            show_default=True,
            help="Keep at most this many runs (newest by last event).",
        ),
        click.option(
            "--retention-days",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Drop runs not updated for this many days.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@_receiver_options
@click.option("--fsync", is_flag=True, help="fsync every commit (survives power loss; slower).")
@click.option(
    "--otlp-http-address",
    default=None,
    help=f"Also take OTLP/HTTP (POST /v1/logs, /v1/traces, /v1/metrics; protobuf or JSON, gzip) on"
    f" this address, e.g. {DEFAULT_OTLP_HTTP_ADDRESS} (the standard OTLP/HTTP port). Default: off.",
)
@click.option(
    "--openlineage-url",
    default=None,
    help="Send OpenLineage RunEvents of node attempts and runs to this endpoint"
    " (POST <url>/api/v1/lineage). Default: off.",
)
@click.option(
    "--openlineage-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append OpenLineage RunEvents to this file (one JSON event a line). Default: off.",
)
@click.option(
    "--openlineage-namespace",
    default=_default("openlineage_namespace"),
    show_default=True,
    help="OpenLineage job namespace.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    default=_default("max_request_bytes"),
    show_default=True,
    help="Largest OTLP request accepted; larger ones get RESOURCE_EXHAUSTED.",
)
@click.option(
    "--auth-token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Require 'Authorization: Bearer <token>' on ingest and read APIs (or set VFO_OTEL_AUTH_TOKEN).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate chain (TLS on both servers).",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key for --tls-cert."
)
@click.option(
    "--cors-origin", multiple=True, help="Browser origin allowed to read the HTTP API (repeatable)."
)
@click.option(
    "--stale-after",
    "stale_after_s",
    type=click.FloatRange(min=0, min_open=True),
    default=_default("stale_after_s"),
    show_default=True,
    help="Seconds without any event (heartbeats included) after which a running node is shown stale.",
)
@click.option(
    "--heartbeat-lost-after",
    "heartbeat_lost_after_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="End a node silent this many seconds as failed/HeartbeatLost (synthetic). Default: off.",
)
@click.option(
    "--fold-cache-events",
    type=click.IntRange(min=1),
    default=_default("fold_cache_events"),
    show_default=True,
    help="Bound of the cache of folded runs, in events (about 0.5 KB each); cold runs are evicted.",
)
@click.option(
    "--store-pool-size",
    type=click.IntRange(min=1, max=100),
    default=_default("store_pool_size"),
    show_default=True,
    help="Connections to a PostgreSQL store.",
)
def serve(
    grpc_address: str,
    http_address: str,
    no_http: bool,
    store_path: str,
    retention_runs: int,
    retention_days: float | None,
    fsync: bool,
    otlp_http_address: str | None,
    openlineage_url: str | None,
    openlineage_file: str | None,
    openlineage_namespace: str,
    max_request_bytes: int,
    auth_token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    cors_origin: tuple[str, ...],
    stale_after_s: float,
    heartbeat_lost_after_s: float | None,
    fold_cache_events: int,
    store_pool_size: int,
) -> None:
    """Run the receiver: OTLP in (traces, logs; gRPC, and HTTP when asked), snapshots out (gRPC, HTTP JSON).

    Binds to loopback (127.0.0.1) by default; any other address must be given explicitly.
    Stops on SIGINT/SIGTERM after in-flight exports finish.
    """
    from vfo_otel.receiver import ReceiverServer, StoreError, TlsFiles, tune_gc

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    token = _token(auth_token_file)
    config = _config(
        grpc_address=grpc_address,
        http_address=None if no_http else http_address,
        store_path=store_path,
        retention_runs=retention_runs,
        retention_days=retention_days,
        fsync=fsync,
        otlp_http_address=otlp_http_address,
        openlineage_url=openlineage_url,
        openlineage_file=openlineage_file,
        openlineage_namespace=openlineage_namespace,
        max_request_bytes=max_request_bytes,
        auth_token=token,
        cors_origins=list(cors_origin),
        stale_after_s=stale_after_s,
        heartbeat_lost_after_s=heartbeat_lost_after_s,
        fold_cache_events=fold_cache_events,
        store_pool_size=store_pool_size,
    )
    tls = TlsFiles(tls_cert, tls_key) if tls_cert and tls_key else None

    async def run() -> None:
        server = ReceiverServer(config, tls)
        try:
            await server.start()
        except (OSError, RuntimeError, StoreError) as exc:
            raise click.ClickException(str(exc)) from exc
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        grpc_host = config.grpc_address.rsplit(":", 1)[0]
        http_host = (config.http_address or "").rsplit(":", 1)[0]
        http = f", HTTP on {http_host}:{server.http_port}" if server.http_port else ""
        if server.otlp_http_port:
            otlp_http_host = (config.otlp_http_address or "").rsplit(":", 1)[0]
            http += f", OTLP/HTTP on {otlp_http_host}:{server.otlp_http_port}"
        click.echo(
            f"vfo-otel receiver: OTLP/gRPC on {grpc_host}:{server.grpc_port}{http}, "
            f"store {server.receiver.store.location if server.receiver.store else config.store_path}",
            err=True,
        )
        sys.stderr.flush()
        await stop.wait()
        click.echo("stopping", err=True)
        await server.stop(grace_s=5.0)

    asyncio.run(run())


def _client(receiver: str, auth_token_file: str | None) -> Any:
    from vfo_otel.client import SnapshotClient

    return SnapshotClient(receiver, token=_token(auth_token_file))


def _rpc_error(exc: grpc.RpcError, receiver: str) -> click.ClickException:
    return click.ClickException(f"receiver {receiver}: {exc.code().name}: {exc.details()}")


_receiver_option = click.option(
    "--receiver", default=DEFAULT_GRPC_ADDRESS, show_default=True, help="gRPC address of the receiver."
)
_token_option = click.option(
    "--auth-token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Bearer token file (or set VFO_OTEL_AUTH_TOKEN).",
)


@main.command()
@_receiver_option
@_token_option
@click.option("--state", type=click.Choice(STATES), help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the ListRunsResponse as JSON.")
def runs(receiver: str, auth_token_file: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from vfo_otel.app.report import RUN_LINE_HEADER, format_run_line

    state_n = state_number(state) if state else 0
    with _client(receiver, auth_token_file) as client:
        try:
            resp = client.list_runs(page_size=limit, state=state_n)
        except grpc.RpcError as exc:
            raise _rpc_error(exc, receiver) from exc
    if as_json:
        click.echo(json_format.MessageToJson(resp))
        return
    if not resp.runs:
        click.echo("no runs")
        return
    click.echo(RUN_LINE_HEADER)
    for item in resp.runs:
        click.echo(format_run_line(item))


@main.command()
@click.argument("run_id")
@_receiver_option
@_token_option
@click.option(
    "--pipeline", "pipeline_id", default="", help="Select a pipeline (with --asset) for node details."
)
@click.option("--asset", "asset_id", default="", help="Select an asset for node details.")
@click.option(
    "--asset-page-size",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Rows per page of each pipeline's asset list (0: the receiver's default, 100).",
)
@click.option(
    "--asset-page-token",
    default="",
    help="Start a pipeline's asset list at this page (a token from Pipeline.assetPage in --json output).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the DashboardSnapshot as JSON (protobuf JSON mapping)."
)
def snapshot(
    run_id: str,
    receiver: str,
    auth_token_file: str | None,
    pipeline_id: str,
    asset_id: str,
    asset_page_size: int,
    asset_page_token: str,
    as_json: bool,
) -> None:
    """Print the snapshot of RUN_ID: a readable summary, or the JSON.

    Counts cover the whole run; the asset lists (JSON) hold one page per pipeline.
    """
    from vfo_otel.app.report import format_summary

    if asset_id and not pipeline_id:
        raise click.UsageError("--asset needs --pipeline (asset ids are per pipeline)")
    with _client(receiver, auth_token_file) as client:
        try:
            snap = client.get_snapshot(
                run_id,
                pipeline_id,
                asset_id,
                asset_page_size=asset_page_size,
                asset_page_token=asset_page_token,
            )
        except grpc.RpcError as exc:
            raise _rpc_error(exc, receiver) from exc
    click.echo(json_format.MessageToJson(snap) if as_json else format_summary(snap))


@main.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.option("--run-id", required=True, help="Run id.")
@click.option("--pipeline", "pipeline_id", required=True, help="Pipeline id.")
@click.option("--asset", "asset_id", required=True, help="Asset id.")
@click.option("--node", "node_id", required=True, help="Node id.")
@click.option("--stage", "stage_id", required=True, help="Stage id (low-cardinality group, e.g. encode).")
@click.option("--attempt", type=click.IntRange(min=1), default=1, show_default=True, help="Attempt number.")
@click.option("--after", multiple=True, help="Upstream node id (repeatable): draws the DAG edges.")
@click.option(
    "--otlp-endpoint",
    default=None,
    help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4317); over"
    " OTLP/HTTP with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (then the base URL, e.g. :4318).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    run_id: str,
    pipeline_id: str,
    asset_id: str,
    node_id: str,
    stage_id: str,
    attempt: int,
    after: tuple[str, ...],
    otlp_endpoint: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND as one node attempt: `vfo-otel exec --run-id R ... -- CMD ARGS...`.

    \b
    Records the command line, exit code and duration. A non-zero exit is `failed` with
    error class ExitCode; death by a signal is `failed` with Signal; a command that cannot
    start is `failed` with its OS error (exit status 127). stdout/stderr pass through and
    the command's exit status is returned (128+N for signal N, like a shell). SIGTERM and
    SIGINT are forwarded to the command.
    """
    from vfo_otel.emitter import Emitter

    # One export attempt window for a short-lived process: with no receiver the command's
    # status comes back within ~EXEC_EXPORT_TIMEOUT_S, with one line of warning instead of the
    # SDK's retry log (the three signals flush at once).
    for name in ("opentelemetry.exporter.otlp.proto.grpc.exporter", "opentelemetry.exporter.otlp.proto.http"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    emitter = Emitter(
        endpoint=otlp_endpoint, export_metrics_otlp=True, export_timeout_s=EXEC_EXPORT_TIMEOUT_S
    )
    run = emitter.run(run_id)
    asset = run.pipeline(pipeline_id).asset(asset_id)
    node = asset.node(node_id, stage=stage_id, after=list(after), attempt=attempt)
    status = 0
    with node:
        node.set_command(list(command))
        try:
            proc = subprocess.Popen(list(command))
        except OSError as exc:
            node.fail(type(exc).__name__, f"cannot start {command[0]!r}: {exc.strerror or exc}")
            click.echo(f"vfo-otel exec: cannot start {command[0]!r}: {exc}", err=True)
            status = 127
        else:
            forward = {
                sig: signal.signal(sig, lambda n, _f: proc.send_signal(n))
                for sig in (signal.SIGTERM, signal.SIGINT)
            }
            try:
                code = proc.wait()
            finally:
                for sig, old in forward.items():
                    signal.signal(sig, old)
            node.set_exit_code(code)
            status = 128 - code if code < 0 else code
    flushed = emitter.force_flush(int(EXEC_EXPORT_TIMEOUT_S * 1000) + 500)
    emitter.shutdown(timeout_millis=500)
    if not flushed or any(emitter.stats.dropped.values()):  # the exporters count what failed
        where = otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
        click.echo(
            f"vfo-otel exec: warning: {where} did not take this attempt's events within "
            f"{EXEC_EXPORT_TIMEOUT_S:g} s; they are lost"
            " (is `vfo-otel serve` or a collector running there?)",
            err=True,
        )
    sys.exit(status)


@main.command()
@_receiver_options
@click.option("--run-id", default=None, help="Run id (default: demo-<UTC timestamp>).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the demo's files here (default: a temporary folder).",
)
@click.option(
    "--pace",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds each node attempt takes at least, to watch the dashboard change live.",
)
@click.option(
    "--keep-serving", is_flag=True, help="Leave the embedded receiver up after the run (Ctrl-C stops)."
)
@click.option(
    "--otlp-endpoint",
    default=None,
    help="Send to this OTLP/gRPC endpoint (e.g. a collector) instead of an embedded receiver.",
)
@click.option(
    "--receiver",
    "receiver_address",
    default=None,
    help="With --otlp-endpoint: gRPC address of the receiver to read the snapshot from.",
)
def demo(
    grpc_address: str,
    http_address: str,
    no_http: bool,
    store_path: str,
    retention_runs: int,
    retention_days: float | None,
    run_id: str | None,
    workdir: str | None,
    pace: float,
    keep_serving: bool,
    otlp_endpoint: str | None,
    receiver_address: str | None,
) -> None:
    """Run a real demo pipeline (2 pipelines, 6 assets, retries, failures, a skip) and print its summary.

    By default an embedded receiver (SQLite store) is started; the events go to it through
    the real OTLP/gRPC exporters; the summary is read back over gRPC.
    """
    from vfo_otel.app.demo import DemoResult, run_demo

    config = _config(
        grpc_address=grpc_address,
        http_address=None if no_http else http_address,
        store_path=store_path,
        retention_runs=retention_runs,
        retention_days=retention_days,
    )

    def keep(result: DemoResult) -> None:
        if keep_serving and otlp_endpoint is None:
            click.echo("receiver keeps serving; Ctrl-C stops it")
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass

    try:
        run_demo(
            config=config,
            run_id=run_id,
            workdir=workdir,
            otlp_endpoint=otlp_endpoint,
            receiver_address=receiver_address,
            pace_s=pace,
            log=_quiet_when_closed(click.echo),
            keep=keep,
            keep_serving=keep_serving,
        )
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc


def _quiet_when_closed(echo: Any) -> Any:
    """``echo`` that stops printing when stdout's reader has gone (``vfo-otel demo | head``):
    a closed pipe is the reader's choice, never a failure of the pipeline being shown. Output
    goes to /dev/null from then on (as the Python docs advise for SIGPIPE)."""

    def log(text: str) -> None:
        try:
            echo(text)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    return log


if __name__ == "__main__":  # pragma: no cover
    main()

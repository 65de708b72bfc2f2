"""A small gRPC client of ``vfo.dashboard.v1.SnapshotService`` (used by the CLI and the demo).

Thread contract: blocking calls; one client may be shared by threads (gRPC channels are
thread-safe). Errors are ``grpc.RpcError`` from the server, with its status code.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2_grpc as db_grpc

__all__ = ["SnapshotClient"]


class SnapshotClient:
    """Blocking SnapshotService client.

    Args:
        address: ``host:port`` of the receiver's gRPC server.
        token: bearer token, when the receiver requires one.
        root_certificates: PEM CA bundle for TLS; None for plaintext.
    """

    def __init__(
        self, address: str, *, token: str | None = None, root_certificates: bytes | None = None
    ) -> None:
        self.address = address
        if root_certificates is not None:
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates))
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = db_grpc.SnapshotServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def list_runs(
        self, *, page_size: int = 50, page_token: str = "", state: int = 0, timeout_s: float = 10.0
    ) -> db.ListRunsResponse:
        """One page of runs, newest first."""
        req = db.ListRunsRequest(page_size=page_size, page_token=page_token, state=state)  # type: ignore[arg-type]
        return self._stub.ListRuns(req, timeout=timeout_s, metadata=self._metadata)  # type: ignore[no-any-return]

    def get_snapshot(
        self,
        run_id: str,
        pipeline_id: str = "",
        asset_id: str = "",
        timeout_s: float = 10.0,
        *,
        asset_page_size: int = 0,
        asset_page_token: str = "",
    ) -> db.DashboardSnapshot:
        """The current snapshot of a run, with one page of each pipeline's assets.

        ``asset_page_size`` (0: the receiver's default, 100) and ``asset_page_token`` (from a
        ``Pipeline.asset_page`` of an earlier snapshot) choose the page. Raises grpc.RpcError:
        NOT_FOUND for an unknown run, INVALID_ARGUMENT for a bad page size or token.
        """
        req = db.GetSnapshotRequest(
            run_id=run_id,
            pipeline_id=pipeline_id,
            asset_id=asset_id,
            asset_page_size=asset_page_size,
            asset_page_token=asset_page_token,
        )
        resp = self._stub.GetSnapshot(req, timeout=timeout_s, metadata=self._metadata)
        return resp.snapshot  # type: ignore[no-any-return]

    def watch(
        self,
        run_id: str,
        after_revision: int = 0,
        pipeline_id: str = "",
        asset_id: str = "",
        timeout_s: float | None = None,
        *,
        asset_page_size: int = 0,
        asset_page_token: str = "",
    ) -> Iterator[db.DashboardSnapshot]:
        """Stream snapshots at each new revision (cancel by closing the iterator or on timeout).

        The page arguments are those of :meth:`get_snapshot`.
        """
        req = db.WatchSnapshotRequest(
            run_id=run_id,
            after_revision=after_revision,
            pipeline_id=pipeline_id,
            asset_id=asset_id,
            asset_page_size=asset_page_size,
            asset_page_token=asset_page_token,
        )
        for resp in self._stub.WatchSnapshot(req, timeout=timeout_s, metadata=self._metadata):
            yield resp.snapshot

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> SnapshotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

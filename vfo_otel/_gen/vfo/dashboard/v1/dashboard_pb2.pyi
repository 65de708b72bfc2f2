import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vfo_otel._gen.vfo.events.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StateCounts(_message.Message):
    __slots__ = ("queued", "running", "waiting", "complete", "failed", "skipped", "total")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    queued: int
    running: int
    waiting: int
    complete: int
    failed: int
    skipped: int
    total: int
    def __init__(self, queued: _Optional[int] = ..., running: _Optional[int] = ..., waiting: _Optional[int] = ..., complete: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class RunHeader(_message.Message):
    __slots__ = ("run_id", "state", "state_reported", "start_time", "end_time", "duration", "service_name", "service_version", "host_name", "command", "attributes", "error", "last_update_time", "conflict")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REPORTED_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: _events_pb2.State
    state_reported: bool
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    service_name: str
    service_version: str
    host_name: str
    command: _events_pb2.Command
    attributes: _containers.ScalarMap[str, str]
    error: _events_pb2.Error
    last_update_time: _timestamp_pb2.Timestamp
    conflict: str
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ..., state_reported: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., service_name: _Optional[str] = ..., service_version: _Optional[str] = ..., host_name: _Optional[str] = ..., command: _Optional[_Union[_events_pb2.Command, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., error: _Optional[_Union[_events_pb2.Error, _Mapping]] = ..., last_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., conflict: _Optional[str] = ...) -> None: ...

class AssetSummary(_message.Message):
    __slots__ = ("asset_id", "state", "state_reported", "current_node_id", "current_stage_id", "attempts", "node_counts", "last_update_time", "start_time", "end_time", "duration", "error", "stale")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REPORTED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    state: _events_pb2.State
    state_reported: bool
    current_node_id: str
    current_stage_id: str
    attempts: int
    node_counts: StateCounts
    last_update_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    error: _events_pb2.Error
    stale: bool
    def __init__(self, asset_id: _Optional[str] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ..., state_reported: _Optional[bool] = ..., current_node_id: _Optional[str] = ..., current_stage_id: _Optional[str] = ..., attempts: _Optional[int] = ..., node_counts: _Optional[_Union[StateCounts, _Mapping]] = ..., last_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error: _Optional[_Union[_events_pb2.Error, _Mapping]] = ..., stale: _Optional[bool] = ...) -> None: ...

class WorkflowNode(_message.Message):
    __slots__ = ("node_id", "stage_id", "counts", "depth")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    stage_id: str
    counts: StateCounts
    depth: int
    def __init__(self, node_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., counts: _Optional[_Union[StateCounts, _Mapping]] = ..., depth: _Optional[int] = ...) -> None: ...

class WorkflowEdge(_message.Message):
    __slots__ = ("from_node_id", "to_node_id")
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    from_node_id: str
    to_node_id: str
    def __init__(self, from_node_id: _Optional[str] = ..., to_node_id: _Optional[str] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("nodes", "edges")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[WorkflowNode]
    edges: _containers.RepeatedCompositeFieldContainer[WorkflowEdge]
    def __init__(self, nodes: _Optional[_Iterable[_Union[WorkflowNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[WorkflowEdge, _Mapping]]] = ...) -> None: ...

class AssetPage(_message.Message):
    __slots__ = ("offset", "size", "next_page_token", "previous_page_token")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    offset: int
    size: int
    next_page_token: str
    previous_page_token: str
    def __init__(self, offset: _Optional[int] = ..., size: _Optional[int] = ..., next_page_token: _Optional[str] = ..., previous_page_token: _Optional[str] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("pipeline_id", "state", "state_reported", "start_time", "end_time", "duration", "asset_counts", "node_counts", "assets", "workflow", "error", "asset_page")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REPORTED_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ASSET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ASSET_PAGE_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    state: _events_pb2.State
    state_reported: bool
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    asset_counts: StateCounts
    node_counts: StateCounts
    assets: _containers.RepeatedCompositeFieldContainer[AssetSummary]
    workflow: Workflow
    error: _events_pb2.Error
    asset_page: AssetPage
    def __init__(self, pipeline_id: _Optional[str] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ..., state_reported: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., asset_counts: _Optional[_Union[StateCounts, _Mapping]] = ..., node_counts: _Optional[_Union[StateCounts, _Mapping]] = ..., assets: _Optional[_Iterable[_Union[AssetSummary, _Mapping]]] = ..., workflow: _Optional[_Union[Workflow, _Mapping]] = ..., error: _Optional[_Union[_events_pb2.Error, _Mapping]] = ..., asset_page: _Optional[_Union[AssetPage, _Mapping]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("attempt_id", "state", "start_time", "end_time", "duration", "exit_code", "command", "inputs", "outputs", "error", "synthetic", "last_update_time", "attributes", "stale")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: int
    state: _events_pb2.State
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    exit_code: int
    command: _events_pb2.Command
    inputs: _containers.RepeatedCompositeFieldContainer[_events_pb2.AssetRef]
    outputs: _containers.RepeatedCompositeFieldContainer[_events_pb2.AssetRef]
    error: _events_pb2.Error
    synthetic: bool
    last_update_time: _timestamp_pb2.Timestamp
    attributes: _containers.ScalarMap[str, str]
    stale: bool
    def __init__(self, attempt_id: _Optional[int] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., exit_code: _Optional[int] = ..., command: _Optional[_Union[_events_pb2.Command, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_events_pb2.AssetRef, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[_events_pb2.AssetRef, _Mapping]]] = ..., error: _Optional[_Union[_events_pb2.Error, _Mapping]] = ..., synthetic: _Optional[bool] = ..., last_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., stale: _Optional[bool] = ...) -> None: ...

class NodeDetail(_message.Message):
    __slots__ = ("node_id", "stage_id", "state", "upstream_node_ids", "attempts")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    stage_id: str
    state: _events_pb2.State
    upstream_node_ids: _containers.RepeatedScalarFieldContainer[str]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, node_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ..., upstream_node_ids: _Optional[_Iterable[str]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("pipeline_id", "asset_id")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    asset_id: str
    def __init__(self, pipeline_id: _Optional[str] = ..., asset_id: _Optional[str] = ...) -> None: ...

class StageTotal(_message.Message):
    __slots__ = ("stage_id", "counts", "total_duration", "max_duration")
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    stage_id: str
    counts: StateCounts
    total_duration: _duration_pb2.Duration
    max_duration: _duration_pb2.Duration
    def __init__(self, stage_id: _Optional[str] = ..., counts: _Optional[_Union[StateCounts, _Mapping]] = ..., total_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("pipelines", "assets", "nodes", "attempts", "stale_nodes")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STALE_NODES_FIELD_NUMBER: _ClassVar[int]
    pipelines: StateCounts
    assets: StateCounts
    nodes: StateCounts
    attempts: StateCounts
    stale_nodes: int
    def __init__(self, pipelines: _Optional[_Union[StateCounts, _Mapping]] = ..., assets: _Optional[_Union[StateCounts, _Mapping]] = ..., nodes: _Optional[_Union[StateCounts, _Mapping]] = ..., attempts: _Optional[_Union[StateCounts, _Mapping]] = ..., stale_nodes: _Optional[int] = ...) -> None: ...

class DashboardSnapshot(_message.Message):
    __slots__ = ("schema_version", "revision", "generated_time", "run", "pipelines", "selection", "node_details", "summary", "stage_totals")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    NODE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STAGE_TOTALS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    revision: int
    generated_time: _timestamp_pb2.Timestamp
    run: RunHeader
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    selection: Selection
    node_details: _containers.RepeatedCompositeFieldContainer[NodeDetail]
    summary: Summary
    stage_totals: _containers.RepeatedCompositeFieldContainer[StageTotal]
    def __init__(self, schema_version: _Optional[int] = ..., revision: _Optional[int] = ..., generated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run: _Optional[_Union[RunHeader, _Mapping]] = ..., pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ..., selection: _Optional[_Union[Selection, _Mapping]] = ..., node_details: _Optional[_Iterable[_Union[NodeDetail, _Mapping]]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., stage_totals: _Optional[_Iterable[_Union[StageTotal, _Mapping]]] = ...) -> None: ...

class RunListItem(_message.Message):
    __slots__ = ("run", "summary", "revision")
    RUN_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    run: RunHeader
    summary: Summary
    revision: int
    def __init__(self, run: _Optional[_Union[RunHeader, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _events_pb2.State
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_events_pb2.State, str]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunListItem]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[RunListItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("run_id", "pipeline_id", "asset_id", "asset_page_size", "asset_page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASSET_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    pipeline_id: str
    asset_id: str
    asset_page_size: int
    asset_page_token: str
    def __init__(self, run_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., asset_page_size: _Optional[int] = ..., asset_page_token: _Optional[str] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: DashboardSnapshot
    def __init__(self, snapshot: _Optional[_Union[DashboardSnapshot, _Mapping]] = ...) -> None: ...

class WatchSnapshotRequest(_message.Message):
    __slots__ = ("run_id", "pipeline_id", "asset_id", "after_revision", "asset_page_size", "asset_page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    ASSET_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASSET_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    pipeline_id: str
    asset_id: str
    after_revision: int
    asset_page_size: int
    asset_page_token: str
    def __init__(self, run_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., after_revision: _Optional[int] = ..., asset_page_size: _Optional[int] = ..., asset_page_token: _Optional[str] = ...) -> None: ...

class WatchSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: DashboardSnapshot
    def __init__(self, snapshot: _Optional[_Union[DashboardSnapshot, _Mapping]] = ...) -> None: ...

import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATE_UNSPECIFIED: _ClassVar[State]
    STATE_QUEUED: _ClassVar[State]
    STATE_RUNNING: _ClassVar[State]
    STATE_WAITING: _ClassVar[State]
    STATE_COMPLETE: _ClassVar[State]
    STATE_FAILED: _ClassVar[State]
    STATE_SKIPPED: _ClassVar[State]

class Scope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_UNSPECIFIED: _ClassVar[Scope]
    SCOPE_RUN: _ClassVar[Scope]
    SCOPE_PIPELINE: _ClassVar[Scope]
    SCOPE_ASSET: _ClassVar[Scope]
    SCOPE_NODE: _ClassVar[Scope]
STATE_UNSPECIFIED: State
STATE_QUEUED: State
STATE_RUNNING: State
STATE_WAITING: State
STATE_COMPLETE: State
STATE_FAILED: State
STATE_SKIPPED: State
SCOPE_UNSPECIFIED: Scope
SCOPE_RUN: Scope
SCOPE_PIPELINE: Scope
SCOPE_ASSET: Scope
SCOPE_NODE: Scope

class AssetRef(_message.Message):
    __slots__ = ("asset_id", "uri", "role", "size_bytes", "media_type")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    uri: str
    role: str
    size_bytes: int
    media_type: str
    def __init__(self, asset_id: _Optional[str] = ..., uri: _Optional[str] = ..., role: _Optional[str] = ..., size_bytes: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_line", "argv", "action")
    COMMAND_LINE_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    command_line: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    action: str
    def __init__(self, command_line: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., action: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("error_class", "detail")
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    error_class: str
    detail: str
    def __init__(self, error_class: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("event_id", "time", "source_id", "sequence", "scope", "run_id", "pipeline_id", "asset_id", "node_id", "stage_id", "attempt_id", "state", "previous_state", "duration", "exit_code", "command", "inputs", "outputs", "error", "upstream_node_ids", "attributes", "synthetic", "origin", "heartbeat")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    source_id: str
    sequence: int
    scope: Scope
    run_id: str
    pipeline_id: str
    asset_id: str
    node_id: str
    stage_id: str
    attempt_id: int
    state: State
    previous_state: State
    duration: _duration_pb2.Duration
    exit_code: int
    command: Command
    inputs: _containers.RepeatedCompositeFieldContainer[AssetRef]
    outputs: _containers.RepeatedCompositeFieldContainer[AssetRef]
    error: Error
    upstream_node_ids: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.ScalarMap[str, str]
    synthetic: bool
    origin: Origin
    heartbeat: bool
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_id: _Optional[str] = ..., sequence: _Optional[int] = ..., scope: _Optional[_Union[Scope, str]] = ..., run_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., node_id: _Optional[str] = ..., stage_id: _Optional[str] = ..., attempt_id: _Optional[int] = ..., state: _Optional[_Union[State, str]] = ..., previous_state: _Optional[_Union[State, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., exit_code: _Optional[int] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[AssetRef, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[AssetRef, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., upstream_node_ids: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., synthetic: _Optional[bool] = ..., origin: _Optional[_Union[Origin, _Mapping]] = ..., heartbeat: _Optional[bool] = ...) -> None: ...

class Origin(_message.Message):
    __slots__ = ("service_name", "service_version", "host_name")
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_NAME_FIELD_NUMBER: _ClassVar[int]
    service_name: str
    service_version: str
    host_name: str
    def __init__(self, service_name: _Optional[str] = ..., service_version: _Optional[str] = ..., host_name: _Optional[str] = ...) -> None: ...

class RunEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from transfer.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_STATUS_UNSPECIFIED: _ClassVar[RecordStatus]
    RECORD_STATUS_ACTIVE: _ClassVar[RecordStatus]
    RECORD_STATUS_FROZEN: _ClassVar[RecordStatus]
    RECORD_STATUS_TRANSFERRED_OUT: _ClassVar[RecordStatus]
RECORD_STATUS_UNSPECIFIED: RecordStatus
RECORD_STATUS_ACTIVE: RecordStatus
RECORD_STATUS_FROZEN: RecordStatus
RECORD_STATUS_TRANSFERRED_OUT: RecordStatus

class Record(_message.Message):
    __slots__ = ("lookup_code", "national_id", "level", "custodian_school", "status", "open_transfer_id", "create_time", "update_time", "page_log_salts")
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    NATIONAL_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CUSTODIAN_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_LOG_SALTS_FIELD_NUMBER: _ClassVar[int]
    lookup_code: str
    national_id: str
    level: _common_pb2.RecordLevel
    custodian_school: str
    status: RecordStatus
    open_transfer_id: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    page_log_salts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, lookup_code: _Optional[str] = ..., national_id: _Optional[str] = ..., level: _Optional[_Union[_common_pb2.RecordLevel, str]] = ..., custodian_school: _Optional[str] = ..., status: _Optional[_Union[RecordStatus, str]] = ..., open_transfer_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_log_salts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RegisterRecordRequest(_message.Message):
    __slots__ = ("request_id", "lookup_code", "national_id", "level", "custodian_school")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    NATIONAL_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CUSTODIAN_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lookup_code: str
    national_id: str
    level: _common_pb2.RecordLevel
    custodian_school: str
    def __init__(self, request_id: _Optional[str] = ..., lookup_code: _Optional[str] = ..., national_id: _Optional[str] = ..., level: _Optional[_Union[_common_pb2.RecordLevel, str]] = ..., custodian_school: _Optional[str] = ...) -> None: ...

class RegisterRecordResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: Record
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("lookup_code",)
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    lookup_code: str
    def __init__(self, lookup_code: _Optional[str] = ...) -> None: ...

class GetRecordResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: Record
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class ListRecordsRequest(_message.Message):
    __slots__ = ("school", "page_size", "page_token")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    school: str
    page_size: int
    page_token: str
    def __init__(self, school: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

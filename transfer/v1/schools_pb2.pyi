import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class School(_message.Message):
    __slots__ = ("code", "name", "province", "active", "create_time", "update_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    province: str
    active: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., province: _Optional[str] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterSchoolRequest(_message.Message):
    __slots__ = ("request_id", "code", "name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: str
    name: str
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RegisterSchoolResponse(_message.Message):
    __slots__ = ("school",)
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    school: School
    def __init__(self, school: _Optional[_Union[School, _Mapping]] = ...) -> None: ...

class UpdateSchoolRequest(_message.Message):
    __slots__ = ("request_id", "school", "update_mask")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    school: School
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, request_id: _Optional[str] = ..., school: _Optional[_Union[School, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSchoolResponse(_message.Message):
    __slots__ = ("school",)
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    school: School
    def __init__(self, school: _Optional[_Union[School, _Mapping]] = ...) -> None: ...

class GetSchoolRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class GetSchoolResponse(_message.Message):
    __slots__ = ("school",)
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    school: School
    def __init__(self, school: _Optional[_Union[School, _Mapping]] = ...) -> None: ...

class ListSchoolsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchoolsResponse(_message.Message):
    __slots__ = ("schools", "next_page_token")
    SCHOOLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schools: _containers.RepeatedCompositeFieldContainer[School]
    next_page_token: str
    def __init__(self, schools: _Optional[_Iterable[_Union[School, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

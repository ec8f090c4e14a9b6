import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from transfer.v1 import log_pb2 as _log_pb2
from transfer.v1 import pages_pb2 as _pages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TeacherStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEACHER_STATUS_UNSPECIFIED: _ClassVar[TeacherStatus]
    TEACHER_STATUS_ACTIVE: _ClassVar[TeacherStatus]
    TEACHER_STATUS_ON_LEAVE: _ClassVar[TeacherStatus]
    TEACHER_STATUS_DEPARTED: _ClassVar[TeacherStatus]

class DepartureReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPARTURE_REASON_UNSPECIFIED: _ClassVar[DepartureReason]
    DEPARTURE_REASON_RETIREMENT: _ClassVar[DepartureReason]
    DEPARTURE_REASON_MATERNITY_LEAVE: _ClassVar[DepartureReason]
    DEPARTURE_REASON_TRANSFER: _ClassVar[DepartureReason]
    DEPARTURE_REASON_RESIGNATION: _ClassVar[DepartureReason]
    DEPARTURE_REASON_OTHER: _ClassVar[DepartureReason]

class HandoffState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATE_UNSPECIFIED: _ClassVar[HandoffState]
    HANDOFF_STATE_SCHEDULED: _ClassVar[HandoffState]
    HANDOFF_STATE_IN_FORCE: _ClassVar[HandoffState]
    HANDOFF_STATE_COMPLETED: _ClassVar[HandoffState]
    HANDOFF_STATE_SUPERSEDED: _ClassVar[HandoffState]
TEACHER_STATUS_UNSPECIFIED: TeacherStatus
TEACHER_STATUS_ACTIVE: TeacherStatus
TEACHER_STATUS_ON_LEAVE: TeacherStatus
TEACHER_STATUS_DEPARTED: TeacherStatus
DEPARTURE_REASON_UNSPECIFIED: DepartureReason
DEPARTURE_REASON_RETIREMENT: DepartureReason
DEPARTURE_REASON_MATERNITY_LEAVE: DepartureReason
DEPARTURE_REASON_TRANSFER: DepartureReason
DEPARTURE_REASON_RESIGNATION: DepartureReason
DEPARTURE_REASON_OTHER: DepartureReason
HANDOFF_STATE_UNSPECIFIED: HandoffState
HANDOFF_STATE_SCHEDULED: HandoffState
HANDOFF_STATE_IN_FORCE: HandoffState
HANDOFF_STATE_COMPLETED: HandoffState
HANDOFF_STATE_SUPERSEDED: HandoffState

class TeacherCertificate(_message.Message):
    __slots__ = ("sha256", "key_type", "not_before", "not_after", "der")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    DER_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    key_type: str
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    der: bytes
    def __init__(self, sha256: _Optional[str] = ..., key_type: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., der: _Optional[bytes] = ...) -> None: ...

class Teacher(_message.Message):
    __slots__ = ("id", "school", "code", "name", "status", "certificates", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    school: str
    code: str
    name: str
    status: TeacherStatus
    certificates: _containers.RepeatedCompositeFieldContainer[TeacherCertificate]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., school: _Optional[str] = ..., code: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[TeacherStatus, str]] = ..., certificates: _Optional[_Iterable[_Union[TeacherCertificate, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DutyRef(_message.Message):
    __slots__ = ("role", "school_year", "class_name", "subject")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_YEAR_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    role: _pages_pb2.SignerRole
    school_year: str
    class_name: str
    subject: str
    def __init__(self, role: _Optional[_Union[_pages_pb2.SignerRole, str]] = ..., school_year: _Optional[str] = ..., class_name: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class Duty(_message.Message):
    __slots__ = ("school", "duty", "key", "holder_teacher_id", "update_time")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    DUTY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    school: str
    duty: DutyRef
    key: str
    holder_teacher_id: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, school: _Optional[str] = ..., duty: _Optional[_Union[DutyRef, _Mapping]] = ..., key: _Optional[str] = ..., holder_teacher_id: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DutyReplacement(_message.Message):
    __slots__ = ("duty", "teacher_id")
    DUTY_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    duty: DutyRef
    teacher_id: str
    def __init__(self, duty: _Optional[_Union[DutyRef, _Mapping]] = ..., teacher_id: _Optional[str] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("id", "school", "teacher_id", "reason", "effective_date", "end_date", "replacement_teacher_id", "replacements", "state", "moved_tasks", "create_time", "apply_time", "end_time", "log_salt")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MOVED_TASKS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOG_SALT_FIELD_NUMBER: _ClassVar[int]
    id: str
    school: str
    teacher_id: str
    reason: DepartureReason
    effective_date: str
    end_date: str
    replacement_teacher_id: str
    replacements: _containers.RepeatedCompositeFieldContainer[DutyReplacement]
    state: HandoffState
    moved_tasks: int
    create_time: _timestamp_pb2.Timestamp
    apply_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    log_salt: bytes
    def __init__(self, id: _Optional[str] = ..., school: _Optional[str] = ..., teacher_id: _Optional[str] = ..., reason: _Optional[_Union[DepartureReason, str]] = ..., effective_date: _Optional[str] = ..., end_date: _Optional[str] = ..., replacement_teacher_id: _Optional[str] = ..., replacements: _Optional[_Iterable[_Union[DutyReplacement, _Mapping]]] = ..., state: _Optional[_Union[HandoffState, str]] = ..., moved_tasks: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., apply_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., log_salt: _Optional[bytes] = ...) -> None: ...

class RegisterTeacherRequest(_message.Message):
    __slots__ = ("request_id", "school", "code", "name", "certificates")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    school: str
    code: str
    name: str
    certificates: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, request_id: _Optional[str] = ..., school: _Optional[str] = ..., code: _Optional[str] = ..., name: _Optional[str] = ..., certificates: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RegisterTeacherResponse(_message.Message):
    __slots__ = ("teacher",)
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    teacher: Teacher
    def __init__(self, teacher: _Optional[_Union[Teacher, _Mapping]] = ...) -> None: ...

class AddTeacherCertificateRequest(_message.Message):
    __slots__ = ("request_id", "teacher_id", "certificate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    teacher_id: str
    certificate: bytes
    def __init__(self, request_id: _Optional[str] = ..., teacher_id: _Optional[str] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class AddTeacherCertificateResponse(_message.Message):
    __slots__ = ("teacher",)
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    teacher: Teacher
    def __init__(self, teacher: _Optional[_Union[Teacher, _Mapping]] = ...) -> None: ...

class GetTeacherRequest(_message.Message):
    __slots__ = ("teacher_id",)
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    teacher_id: str
    def __init__(self, teacher_id: _Optional[str] = ...) -> None: ...

class GetTeacherResponse(_message.Message):
    __slots__ = ("teacher",)
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    teacher: Teacher
    def __init__(self, teacher: _Optional[_Union[Teacher, _Mapping]] = ...) -> None: ...

class ListTeachersRequest(_message.Message):
    __slots__ = ("school", "page_size", "page_token")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    school: str
    page_size: int
    page_token: str
    def __init__(self, school: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTeachersResponse(_message.Message):
    __slots__ = ("teachers", "next_page_token")
    TEACHERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    teachers: _containers.RepeatedCompositeFieldContainer[Teacher]
    next_page_token: str
    def __init__(self, teachers: _Optional[_Iterable[_Union[Teacher, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AssignDutyRequest(_message.Message):
    __slots__ = ("request_id", "school", "duty", "teacher_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    DUTY_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    school: str
    duty: DutyRef
    teacher_id: str
    def __init__(self, request_id: _Optional[str] = ..., school: _Optional[str] = ..., duty: _Optional[_Union[DutyRef, _Mapping]] = ..., teacher_id: _Optional[str] = ...) -> None: ...

class AssignDutyResponse(_message.Message):
    __slots__ = ("duty", "receipt")
    DUTY_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    duty: Duty
    receipt: _log_pb2.LogReceipt
    def __init__(self, duty: _Optional[_Union[Duty, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class ListDutiesRequest(_message.Message):
    __slots__ = ("school", "teacher_id")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    school: str
    teacher_id: str
    def __init__(self, school: _Optional[str] = ..., teacher_id: _Optional[str] = ...) -> None: ...

class ListDutiesResponse(_message.Message):
    __slots__ = ("duties",)
    DUTIES_FIELD_NUMBER: _ClassVar[int]
    duties: _containers.RepeatedCompositeFieldContainer[Duty]
    def __init__(self, duties: _Optional[_Iterable[_Union[Duty, _Mapping]]] = ...) -> None: ...

class ListSigningTasksRequest(_message.Message):
    __slots__ = ("teacher_id", "page_size", "page_token")
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    teacher_id: str
    page_size: int
    page_token: str
    def __init__(self, teacher_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSigningTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_pages_pb2.SigningTask]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_pages_pb2.SigningTask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RecordDepartureRequest(_message.Message):
    __slots__ = ("request_id", "teacher_id", "reason", "effective_date", "end_date", "replacement_teacher_id", "replacements")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    teacher_id: str
    reason: DepartureReason
    effective_date: str
    end_date: str
    replacement_teacher_id: str
    replacements: _containers.RepeatedCompositeFieldContainer[DutyReplacement]
    def __init__(self, request_id: _Optional[str] = ..., teacher_id: _Optional[str] = ..., reason: _Optional[_Union[DepartureReason, str]] = ..., effective_date: _Optional[str] = ..., end_date: _Optional[str] = ..., replacement_teacher_id: _Optional[str] = ..., replacements: _Optional[_Iterable[_Union[DutyReplacement, _Mapping]]] = ...) -> None: ...

class RecordDepartureResponse(_message.Message):
    __slots__ = ("handoff", "receipt")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    receipt: _log_pb2.LogReceipt
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class GetHandoffRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...

class GetHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class ListHandoffsRequest(_message.Message):
    __slots__ = ("school", "teacher_id", "page_size", "page_token")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    school: str
    teacher_id: str
    page_size: int
    page_token: str
    def __init__(self, school: _Optional[str] = ..., teacher_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHandoffsResponse(_message.Message):
    __slots__ = ("handoffs", "next_page_token")
    HANDOFFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    handoffs: _containers.RepeatedCompositeFieldContainer[Handoff]
    next_page_token: str
    def __init__(self, handoffs: _Optional[_Iterable[_Union[Handoff, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

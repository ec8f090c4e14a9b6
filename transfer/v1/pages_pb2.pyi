import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from transfer.v1 import log_pb2 as _log_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAGE_STATE_UNSPECIFIED: _ClassVar[PageState]
    PAGE_STATE_DRAFT: _ClassVar[PageState]
    PAGE_STATE_SIGNING: _ClassVar[PageState]
    PAGE_STATE_SIGNED: _ClassVar[PageState]
    PAGE_STATE_LOCKED: _ClassVar[PageState]

class LockTrack(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCK_TRACK_UNSPECIFIED: _ClassVar[LockTrack]
    LOCK_TRACK_COMPLETED: _ClassVar[LockTrack]
    LOCK_TRACK_SUPPLEMENTARY: _ClassVar[LockTrack]

class SignerRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNER_ROLE_UNSPECIFIED: _ClassVar[SignerRole]
    SIGNER_ROLE_HOMEROOM: _ClassVar[SignerRole]
    SIGNER_ROLE_SUBJECT: _ClassVar[SignerRole]
    SIGNER_ROLE_PRINCIPAL: _ClassVar[SignerRole]
PAGE_STATE_UNSPECIFIED: PageState
PAGE_STATE_DRAFT: PageState
PAGE_STATE_SIGNING: PageState
PAGE_STATE_SIGNED: PageState
PAGE_STATE_LOCKED: PageState
LOCK_TRACK_UNSPECIFIED: LockTrack
LOCK_TRACK_COMPLETED: LockTrack
LOCK_TRACK_SUPPLEMENTARY: LockTrack
SIGNER_ROLE_UNSPECIFIED: SignerRole
SIGNER_ROLE_HOMEROOM: SignerRole
SIGNER_ROLE_SUBJECT: SignerRole
SIGNER_ROLE_PRINCIPAL: SignerRole

class RequiredSignature(_message.Message):
    __slots__ = ("role", "subject")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    role: SignerRole
    subject: str
    def __init__(self, role: _Optional[_Union[SignerRole, str]] = ..., subject: _Optional[str] = ...) -> None: ...

class SigningTask(_message.Message):
    __slots__ = ("page_id", "requirement", "assignee_teacher_id", "signed_by_teacher_id", "signature", "certificate_sha256", "sign_time", "digest")
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNED_BY_TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    page_id: str
    requirement: RequiredSignature
    assignee_teacher_id: str
    signed_by_teacher_id: str
    signature: bytes
    certificate_sha256: str
    sign_time: _timestamp_pb2.Timestamp
    digest: bytes
    def __init__(self, page_id: _Optional[str] = ..., requirement: _Optional[_Union[RequiredSignature, _Mapping]] = ..., assignee_teacher_id: _Optional[str] = ..., signed_by_teacher_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., certificate_sha256: _Optional[str] = ..., sign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., digest: _Optional[bytes] = ...) -> None: ...

class Page(_message.Message):
    __slots__ = ("id", "lookup_code", "issuing_school", "school_year", "segment", "grade", "class_name", "media_type", "payload_sha256", "payload_size", "version", "digest", "state", "lock_track", "tasks", "create_time", "update_time", "lock_time", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    ISSUING_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCK_TRACK_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCK_TIME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    lookup_code: str
    issuing_school: str
    school_year: str
    segment: str
    grade: int
    class_name: str
    media_type: str
    payload_sha256: bytes
    payload_size: int
    version: int
    digest: bytes
    state: PageState
    lock_track: LockTrack
    tasks: _containers.RepeatedCompositeFieldContainer[SigningTask]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    lock_time: _timestamp_pb2.Timestamp
    payload: bytes
    def __init__(self, id: _Optional[str] = ..., lookup_code: _Optional[str] = ..., issuing_school: _Optional[str] = ..., school_year: _Optional[str] = ..., segment: _Optional[str] = ..., grade: _Optional[int] = ..., class_name: _Optional[str] = ..., media_type: _Optional[str] = ..., payload_sha256: _Optional[bytes] = ..., payload_size: _Optional[int] = ..., version: _Optional[int] = ..., digest: _Optional[bytes] = ..., state: _Optional[_Union[PageState, str]] = ..., lock_track: _Optional[_Union[LockTrack, str]] = ..., tasks: _Optional[_Iterable[_Union[SigningTask, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lock_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class AddPageRequest(_message.Message):
    __slots__ = ("request_id", "lookup_code", "school_year", "segment", "grade", "class_name", "media_type", "payload", "payload_sha256", "lock_track", "required_signatures")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    SCHOOL_YEAR_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOCK_TRACK_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lookup_code: str
    school_year: str
    segment: str
    grade: int
    class_name: str
    media_type: str
    payload: bytes
    payload_sha256: bytes
    lock_track: LockTrack
    required_signatures: _containers.RepeatedCompositeFieldContainer[RequiredSignature]
    def __init__(self, request_id: _Optional[str] = ..., lookup_code: _Optional[str] = ..., school_year: _Optional[str] = ..., segment: _Optional[str] = ..., grade: _Optional[int] = ..., class_name: _Optional[str] = ..., media_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., payload_sha256: _Optional[bytes] = ..., lock_track: _Optional[_Union[LockTrack, str]] = ..., required_signatures: _Optional[_Iterable[_Union[RequiredSignature, _Mapping]]] = ...) -> None: ...

class AddPageResponse(_message.Message):
    __slots__ = ("page", "receipt")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    page: Page
    receipt: _log_pb2.LogReceipt
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class ReplacePageRequest(_message.Message):
    __slots__ = ("request_id", "page_id", "media_type", "payload", "payload_sha256")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    page_id: str
    media_type: str
    payload: bytes
    payload_sha256: bytes
    def __init__(self, request_id: _Optional[str] = ..., page_id: _Optional[str] = ..., media_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., payload_sha256: _Optional[bytes] = ...) -> None: ...

class ReplacePageResponse(_message.Message):
    __slots__ = ("page", "receipt")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    page: Page
    receipt: _log_pb2.LogReceipt
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class GetPageRequest(_message.Message):
    __slots__ = ("page_id", "include_payload")
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    page_id: str
    include_payload: bool
    def __init__(self, page_id: _Optional[str] = ..., include_payload: _Optional[bool] = ...) -> None: ...

class GetPageResponse(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: Page
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class ListPagesRequest(_message.Message):
    __slots__ = ("lookup_code", "page_size", "page_token")
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lookup_code: str
    page_size: int
    page_token: str
    def __init__(self, lookup_code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPagesResponse(_message.Message):
    __slots__ = ("pages", "next_page_token")
    PAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pages: _containers.RepeatedCompositeFieldContainer[Page]
    next_page_token: str
    def __init__(self, pages: _Optional[_Iterable[_Union[Page, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SignPageRequest(_message.Message):
    __slots__ = ("request_id", "page_id", "requirement", "teacher_id", "digest", "signature", "certificate_sha256")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    TEACHER_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    page_id: str
    requirement: RequiredSignature
    teacher_id: str
    digest: bytes
    signature: bytes
    certificate_sha256: str
    def __init__(self, request_id: _Optional[str] = ..., page_id: _Optional[str] = ..., requirement: _Optional[_Union[RequiredSignature, _Mapping]] = ..., teacher_id: _Optional[str] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate_sha256: _Optional[str] = ...) -> None: ...

class SignPageResponse(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: Page
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class LockPageRequest(_message.Message):
    __slots__ = ("request_id", "page_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    page_id: str
    def __init__(self, request_id: _Optional[str] = ..., page_id: _Optional[str] = ...) -> None: ...

class LockPageResponse(_message.Message):
    __slots__ = ("page", "receipt")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    page: Page
    receipt: _log_pb2.LogReceipt
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

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

class TransferState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_STATE_UNSPECIFIED: _ClassVar[TransferState]
    TRANSFER_STATE_REQUESTED: _ClassVar[TransferState]
    TRANSFER_STATE_ACCEPTED: _ClassVar[TransferState]
    TRANSFER_STATE_REJECTED: _ClassVar[TransferState]
    TRANSFER_STATE_CANCELLED: _ClassVar[TransferState]
    TRANSFER_STATE_EXPIRED: _ClassVar[TransferState]

class TransferScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_SCOPE_UNSPECIFIED: _ClassVar[TransferScope]
    TRANSFER_SCOPE_INTRA_PROVINCE: _ClassVar[TransferScope]
    TRANSFER_SCOPE_INTER_PROVINCE: _ClassVar[TransferScope]

class TransferDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_DIRECTION_UNSPECIFIED: _ClassVar[TransferDirection]
    TRANSFER_DIRECTION_INCOMING: _ClassVar[TransferDirection]
    TRANSFER_DIRECTION_OUTGOING: _ClassVar[TransferDirection]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FAILED: _ClassVar[DeliveryState]
TRANSFER_STATE_UNSPECIFIED: TransferState
TRANSFER_STATE_REQUESTED: TransferState
TRANSFER_STATE_ACCEPTED: TransferState
TRANSFER_STATE_REJECTED: TransferState
TRANSFER_STATE_CANCELLED: TransferState
TRANSFER_STATE_EXPIRED: TransferState
TRANSFER_SCOPE_UNSPECIFIED: TransferScope
TRANSFER_SCOPE_INTRA_PROVINCE: TransferScope
TRANSFER_SCOPE_INTER_PROVINCE: TransferScope
TRANSFER_DIRECTION_UNSPECIFIED: TransferDirection
TRANSFER_DIRECTION_INCOMING: TransferDirection
TRANSFER_DIRECTION_OUTGOING: TransferDirection
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_FAILED: DeliveryState

class Transfer(_message.Message):
    __slots__ = ("id", "lookup_code", "from_school", "from_province", "to_school", "to_province", "scope", "state", "reason", "create_time", "deadline", "decide_time", "cancel_requested", "delivery_state", "delivery_error", "log_salt")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    FROM_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    FROM_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    TO_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    TO_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_STATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ERROR_FIELD_NUMBER: _ClassVar[int]
    LOG_SALT_FIELD_NUMBER: _ClassVar[int]
    id: str
    lookup_code: str
    from_school: str
    from_province: str
    to_school: str
    to_province: str
    scope: TransferScope
    state: TransferState
    reason: str
    create_time: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    cancel_requested: bool
    delivery_state: DeliveryState
    delivery_error: str
    log_salt: bytes
    def __init__(self, id: _Optional[str] = ..., lookup_code: _Optional[str] = ..., from_school: _Optional[str] = ..., from_province: _Optional[str] = ..., to_school: _Optional[str] = ..., to_province: _Optional[str] = ..., scope: _Optional[_Union[TransferScope, str]] = ..., state: _Optional[_Union[TransferState, str]] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., delivery_state: _Optional[_Union[DeliveryState, str]] = ..., delivery_error: _Optional[str] = ..., log_salt: _Optional[bytes] = ...) -> None: ...

class InitiateTransferRequest(_message.Message):
    __slots__ = ("request_id", "lookup_code", "to_school", "to_province")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_CODE_FIELD_NUMBER: _ClassVar[int]
    TO_SCHOOL_FIELD_NUMBER: _ClassVar[int]
    TO_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lookup_code: str
    to_school: str
    to_province: str
    def __init__(self, request_id: _Optional[str] = ..., lookup_code: _Optional[str] = ..., to_school: _Optional[str] = ..., to_province: _Optional[str] = ...) -> None: ...

class InitiateTransferResponse(_message.Message):
    __slots__ = ("transfer", "receipt")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    receipt: _log_pb2.LogReceipt
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class GetTransferRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class GetTransferResponse(_message.Message):
    __slots__ = ("transfer",)
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("school", "direction", "states", "page_size", "page_token")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    school: str
    direction: TransferDirection
    states: _containers.RepeatedScalarFieldContainer[TransferState]
    page_size: int
    page_token: str
    def __init__(self, school: _Optional[str] = ..., direction: _Optional[_Union[TransferDirection, str]] = ..., states: _Optional[_Iterable[_Union[TransferState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("transfers", "next_page_token")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    next_page_token: str
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcceptTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ...) -> None: ...

class AcceptTransferResponse(_message.Message):
    __slots__ = ("transfer", "receipt")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    receipt: _log_pb2.LogReceipt
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class RejectTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectTransferResponse(_message.Message):
    __slots__ = ("transfer", "receipt")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    receipt: _log_pb2.LogReceipt
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class CancelTransferRequest(_message.Message):
    __slots__ = ("request_id", "transfer_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    transfer_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., transfer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTransferResponse(_message.Message):
    __slots__ = ("transfer", "receipt")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    receipt: _log_pb2.LogReceipt
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., receipt: _Optional[_Union[_log_pb2.LogReceipt, _Mapping]] = ...) -> None: ...

class WatchTransfersRequest(_message.Message):
    __slots__ = ("school", "cursor")
    SCHOOL_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    school: str
    cursor: str
    def __init__(self, school: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class WatchTransfersResponse(_message.Message):
    __slots__ = ("cursor", "transfer", "event_time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    transfer: Transfer
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[str] = ..., transfer: _Optional[_Union[Transfer, _Mapping]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from transfer.v1 import transfers_pb2 as _transfers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerMessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEER_MESSAGE_KIND_UNSPECIFIED: _ClassVar[PeerMessageKind]
    PEER_MESSAGE_KIND_OFFER: _ClassVar[PeerMessageKind]
    PEER_MESSAGE_KIND_CANCEL_REQUEST: _ClassVar[PeerMessageKind]
    PEER_MESSAGE_KIND_RESOLVE: _ClassVar[PeerMessageKind]

class PeerBundleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEER_BUNDLE_STATE_UNSPECIFIED: _ClassVar[PeerBundleState]
    PEER_BUNDLE_STATE_WAITING: _ClassVar[PeerBundleState]
    PEER_BUNDLE_STATE_WITNESSED: _ClassVar[PeerBundleState]
    PEER_BUNDLE_STATE_SPLIT_VIEW: _ClassVar[PeerBundleState]
    PEER_BUNDLE_STATE_GAVE_UP: _ClassVar[PeerBundleState]
PEER_MESSAGE_KIND_UNSPECIFIED: PeerMessageKind
PEER_MESSAGE_KIND_OFFER: PeerMessageKind
PEER_MESSAGE_KIND_CANCEL_REQUEST: PeerMessageKind
PEER_MESSAGE_KIND_RESOLVE: PeerMessageKind
PEER_BUNDLE_STATE_UNSPECIFIED: PeerBundleState
PEER_BUNDLE_STATE_WAITING: PeerBundleState
PEER_BUNDLE_STATE_WITNESSED: PeerBundleState
PEER_BUNDLE_STATE_SPLIT_VIEW: PeerBundleState
PEER_BUNDLE_STATE_GAVE_UP: PeerBundleState

class OfferTransferRequest(_message.Message):
    __slots__ = ("package", "seal")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    package: bytes
    seal: bytes
    def __init__(self, package: _Optional[bytes] = ..., seal: _Optional[bytes] = ...) -> None: ...

class OfferTransferResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: PeerReceipt
    def __init__(self, receipt: _Optional[_Union[PeerReceipt, _Mapping]] = ...) -> None: ...

class RequestCancellationRequest(_message.Message):
    __slots__ = ("transfer_id", "request")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    request: bytes
    def __init__(self, transfer_id: _Optional[str] = ..., request: _Optional[bytes] = ...) -> None: ...

class RequestCancellationResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: PeerReceipt
    def __init__(self, receipt: _Optional[_Union[PeerReceipt, _Mapping]] = ...) -> None: ...

class ResolveTransferRequest(_message.Message):
    __slots__ = ("transfer_id", "decision")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    decision: bytes
    def __init__(self, transfer_id: _Optional[str] = ..., decision: _Optional[bytes] = ...) -> None: ...

class ResolveTransferResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: PeerReceipt
    def __init__(self, receipt: _Optional[_Union[PeerReceipt, _Mapping]] = ...) -> None: ...

class PeerReceipt(_message.Message):
    __slots__ = ("body", "seal")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    seal: bytes
    def __init__(self, body: _Optional[bytes] = ..., seal: _Optional[bytes] = ...) -> None: ...

class PeerReceiptBody(_message.Message):
    __slots__ = ("transfer_id", "kind", "message_sha256", "receiver_province", "log_index", "logged", "checkpoint", "state", "receive_time", "leaf", "inclusion_proof")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOGGED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    kind: PeerMessageKind
    message_sha256: bytes
    receiver_province: str
    log_index: int
    logged: bool
    checkpoint: str
    state: _transfers_pb2.TransferState
    receive_time: _timestamp_pb2.Timestamp
    leaf: bytes
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, transfer_id: _Optional[str] = ..., kind: _Optional[_Union[PeerMessageKind, str]] = ..., message_sha256: _Optional[bytes] = ..., receiver_province: _Optional[str] = ..., log_index: _Optional[int] = ..., logged: _Optional[bool] = ..., checkpoint: _Optional[str] = ..., state: _Optional[_Union[_transfers_pb2.TransferState, str]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leaf: _Optional[bytes] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerDeliveries(_message.Message):
    __slots__ = ("peer_province", "pending", "failed", "delivered", "oldest_pending_seconds", "max_attempts", "last_error")
    PEER_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    peer_province: str
    pending: int
    failed: int
    delivered: int
    oldest_pending_seconds: int
    max_attempts: int
    last_error: str
    def __init__(self, peer_province: _Optional[str] = ..., pending: _Optional[int] = ..., failed: _Optional[int] = ..., delivered: _Optional[int] = ..., oldest_pending_seconds: _Optional[int] = ..., max_attempts: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerDeliveries]
    def __init__(self, peers: _Optional[_Iterable[_Union[PeerDeliveries, _Mapping]]] = ...) -> None: ...

class ListPeerReceiptsRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class DeliveredReceipt(_message.Message):
    __slots__ = ("kind", "peer_province", "receipt", "bundle", "deliver_time", "bundle_state", "bundle_error", "conflicting_checkpoint")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PEER_PROVINCE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DELIVER_TIME_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_STATE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    kind: PeerMessageKind
    peer_province: str
    receipt: PeerReceipt
    bundle: str
    deliver_time: _timestamp_pb2.Timestamp
    bundle_state: PeerBundleState
    bundle_error: str
    conflicting_checkpoint: str
    def __init__(self, kind: _Optional[_Union[PeerMessageKind, str]] = ..., peer_province: _Optional[str] = ..., receipt: _Optional[_Union[PeerReceipt, _Mapping]] = ..., bundle: _Optional[str] = ..., deliver_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bundle_state: _Optional[_Union[PeerBundleState, str]] = ..., bundle_error: _Optional[str] = ..., conflicting_checkpoint: _Optional[str] = ...) -> None: ...

class ListPeerReceiptsResponse(_message.Message):
    __slots__ = ("receipts",)
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedCompositeFieldContainer[DeliveredReceipt]
    def __init__(self, receipts: _Optional[_Iterable[_Union[DeliveredReceipt, _Mapping]]] = ...) -> None: ...

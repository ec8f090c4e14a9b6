from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogReceipt(_message.Message):
    __slots__ = ("index", "leaf", "origin", "signed_entry")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SIGNED_ENTRY_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf: bytes
    origin: str
    signed_entry: str
    def __init__(self, index: _Optional[int] = ..., leaf: _Optional[bytes] = ..., origin: _Optional[str] = ..., signed_entry: _Optional[str] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("tree_size",)
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    def __init__(self, tree_size: _Optional[int] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "tree_size", "root_hash")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    tree_size: int
    root_hash: bytes
    def __init__(self, checkpoint: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("start", "end", "page_size", "page_token")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    page_size: int
    page_token: str
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("index", "leaf")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf: bytes
    def __init__(self, index: _Optional[int] = ..., leaf: _Optional[bytes] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("index", "tree_size", "proof")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("first_size", "second_size")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("first_size", "second_size", "proof")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetLogInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Witness(_message.Message):
    __slots__ = ("name", "vkey", "url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VKEY_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    vkey: str
    url: str
    def __init__(self, name: _Optional[str] = ..., vkey: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class GetLogInfoResponse(_message.Message):
    __slots__ = ("origin", "log_vkey", "seal_vkey", "witnesses", "witness_quorum", "next_log_vkey", "previous_log_vkeys", "own_witness_vkey")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    LOG_VKEY_FIELD_NUMBER: _ClassVar[int]
    SEAL_VKEY_FIELD_NUMBER: _ClassVar[int]
    WITNESSES_FIELD_NUMBER: _ClassVar[int]
    WITNESS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    NEXT_LOG_VKEY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LOG_VKEYS_FIELD_NUMBER: _ClassVar[int]
    OWN_WITNESS_VKEY_FIELD_NUMBER: _ClassVar[int]
    origin: str
    log_vkey: str
    seal_vkey: str
    witnesses: _containers.RepeatedCompositeFieldContainer[Witness]
    witness_quorum: int
    next_log_vkey: str
    previous_log_vkeys: _containers.RepeatedScalarFieldContainer[str]
    own_witness_vkey: str
    def __init__(self, origin: _Optional[str] = ..., log_vkey: _Optional[str] = ..., seal_vkey: _Optional[str] = ..., witnesses: _Optional[_Iterable[_Union[Witness, _Mapping]]] = ..., witness_quorum: _Optional[int] = ..., next_log_vkey: _Optional[str] = ..., previous_log_vkeys: _Optional[_Iterable[str]] = ..., own_witness_vkey: _Optional[str] = ...) -> None: ...

class GetProofBundleRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetProofBundleResponse(_message.Message):
    __slots__ = ("bundle", "tree_size")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    bundle: str
    tree_size: int
    def __init__(self, bundle: _Optional[str] = ..., tree_size: _Optional[int] = ...) -> None: ...

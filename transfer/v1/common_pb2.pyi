from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class RecordLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_LEVEL_UNSPECIFIED: _ClassVar[RecordLevel]
    RECORD_LEVEL_PRIMARY: _ClassVar[RecordLevel]
    RECORD_LEVEL_LOWER_SECONDARY: _ClassVar[RecordLevel]
    RECORD_LEVEL_UPPER_SECONDARY: _ClassVar[RecordLevel]
RECORD_LEVEL_UNSPECIFIED: RecordLevel
RECORD_LEVEL_PRIMARY: RecordLevel
RECORD_LEVEL_LOWER_SECONDARY: RecordLevel
RECORD_LEVEL_UPPER_SECONDARY: RecordLevel

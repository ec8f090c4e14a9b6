"""The transparency log's pure parts: RFC 9162 Merkle trees and proofs, and
C2SP signed notes and checkpoints. Bytes in, bytes out: no I/O, no database,
and no knowledge of the domain (which encodes its own events into leaves)."""

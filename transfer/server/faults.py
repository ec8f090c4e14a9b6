"""Injected faults, for the tests of the node-to-node protocol only.

Off unless the environment variable TRANSFER_FAULTS is set (comma-separated):

    drop_peer_acks=N   PeerService processes a message and stores its receipt,
                       then answers UNAVAILABLE, N times: a lost acknowledgement
    refuse_offers      PeerService refuses every offer with FAILED_PRECONDITION
    tamper_packages    the dispatcher flips a byte of every package it sends,
                       after sealing
    other_bundle_leaf  LogService.GetProofBundle serves the bundle with a byte
                       of its entry flipped (another leaf than the receipt's)
    bad_consistency    LogService.GetConsistencyProof serves a proof with a byte
                       of its first hash flipped (checkpoints that do not extend)

Production nodes never set it; the server logs a warning when it is set.
"""

from __future__ import annotations

import os

from transfer.domain.errors import FailedPrecondition, Unavailable

_spec = {k: v for k, _, v in (item.partition("=") for item in os.environ.get("TRANSFER_FAULTS", "").split(",") if item)}
_drops = [int(_spec.get("drop_peer_acks", "0") or 0)]  # a list: one mutable count for the process


def active() -> bool:
    return bool(_spec)


def maybe_drop_ack() -> None:
    if _drops[0] > 0:
        _drops[0] -= 1
        raise Unavailable("INJECTED_FAULT", "acknowledgement dropped (injected fault)")


def maybe_refuse_offer() -> None:
    if "refuse_offers" in _spec:
        raise FailedPrecondition("INJECTED_FAULT", "offers refused (injected fault)")


def maybe_tamper(package: bytes) -> bytes:
    if "tamper_packages" in _spec and package:
        return package[:-2] + bytes([package[-2] ^ 1]) + package[-1:]
    return package


def maybe_other_leaf(leaf: bytes) -> bytes:
    if "other_bundle_leaf" in _spec and leaf:
        return bytes([leaf[0] ^ 1]) + leaf[1:]
    return leaf


def maybe_break_consistency(proof: list[bytes]) -> list[bytes]:
    if "bad_consistency" in _spec and proof:
        return [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    return proof

"""Concurrent clients racing on one transfer or one record: exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support import RunningNode, new_lookup_code, new_national_id
from transfer.client import TransferError
from transfer.v1 import common_pb2, transfers_pb2

ROUNDS = 15


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Start the calls together (a barrier), return each result or TransferError."""
    barrier = threading.Barrier(len(calls))

    def run(fn: Callable[[], Any]) -> Any:
        barrier.wait(10)
        try:
            return fn()
        except TransferError as err:
            return err

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_accept_races_cancel(node: RunningNode) -> None:
    """Receiver accepting while sender cancels: one wins, the loser gets FAILED_PRECONDITION, state agrees."""
    sender, receiver = node.client("school-S1"), node.client("school-S2")
    wins = {"accept": 0, "cancel": 0}
    for _ in range(ROUNDS):
        code = new_lookup_code()
        sender.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        t = sender.initiate_transfer(code, "S2").transfer
        tid = t.id
        accepted, cancelled = race(
            lambda tid=tid: receiver.accept_transfer(tid), lambda tid=tid: sender.cancel_transfer(tid)
        )
        outcomes = [accepted, cancelled]
        errors = [o for o in outcomes if isinstance(o, TransferError)]
        assert len(errors) == 1, outcomes
        assert (errors[0].code.name, errors[0].reason) == ("FAILED_PRECONDITION", "TRANSFER_NOT_OPEN")
        final = receiver.get_transfer(t.id)
        custodian = node.client("province-admin").get_record(code).custodian_school
        if isinstance(cancelled, TransferError):
            wins["accept"] += 1
            assert final.state == transfers_pb2.TRANSFER_STATE_ACCEPTED and custodian == "S2"
        else:
            wins["cancel"] += 1
            assert final.state == transfers_pb2.TRANSFER_STATE_CANCELLED and custodian == "S1"
    assert sum(wins.values()) == ROUNDS


def test_two_receivers_race_accept_and_reject(node: RunningNode) -> None:
    """Accept and reject sent together by two systems of the receiving school: exactly one applies."""
    sender = node.client("school-S1")
    a, b = node.client("school-S2"), node.client("school-admin-S2")
    for _ in range(ROUNDS):
        code = new_lookup_code()
        sender.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        t = sender.initiate_transfer(code, "S2").transfer
        tid = t.id
        outcomes = race(lambda tid=tid: a.accept_transfer(tid), lambda tid=tid: b.reject_transfer(tid, "full"))
        assert sum(isinstance(o, TransferError) for o in outcomes) == 1, outcomes


def test_many_initiates_of_one_record(node: RunningNode) -> None:
    """Eight concurrent initiates of one record to different schools: one transfer opens, seven are refused."""
    clients = [node.client("school-S1") for _ in range(8)]
    code = new_lookup_code()
    clients[0].register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    targets = ["S2", "S3"] * 4
    outcomes = race(*[lambda c=c, to=to: c.initiate_transfer(code, to) for c, to in zip(clients, targets, strict=True)])
    ok = [o for o in outcomes if not isinstance(o, TransferError)]
    assert len(ok) == 1
    assert all(o.reason == "TRANSFER_ALREADY_OPEN" for o in outcomes if isinstance(o, TransferError))
    assert clients[0].get_record(code).open_transfer_id == ok[0].transfer.id


def test_concurrent_same_request_id_applies_once(node: RunningNode) -> None:
    """The same request sent by eight threads at once (a retry storm) applies once; all get one answer."""
    clients = [node.client("school-S1") for _ in range(8)]
    code = new_lookup_code()
    clients[0].register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    rid = "5f0c8e8a-6f4e-4a57-8d0f-2b9a7c3e1d20"
    outcomes = race(*[lambda c=c: c.initiate_transfer(code, "S2", request_id=rid) for c in clients])
    assert not [o for o in outcomes if isinstance(o, TransferError)]
    assert len({o.transfer.id for o in outcomes}) == 1
    assert len(list(clients[0].iter_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING))) == 1

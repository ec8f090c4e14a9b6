"""A node that cannot sign a checkpoint consistent with its last one changes nothing more.

Its log lost its tail behind its back (rows deleted, a failover to a replica that was behind): every
mutation is refused with UNAVAILABLE LOG_INCONSISTENT, no receipt names a position the signed tree
already gives another entry, the write services say NOT_SERVING, and the node logs one line with the
sizes and roots. Reads, and the checkpoints already signed, are still served.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text

from storage.database import sync_url
from tests.support import RunningNode, new_lookup_code, new_national_id, refused
from transfer.client import ClientTls, RetryPolicy
from transfer.domain.errors import Unavailable
from transfer.server.app import LIVENESS, READINESS, SERVICE_NAMES, WRITE_SERVICE_NAMES

NO_RETRY = RetryPolicy(attempts=1)


def _cut_tail(database_url: str, keep: int) -> None:
    """Go behind the node's back: delete the log's entries from `keep` on, and the hashes over them."""
    engine = create_engine(sync_url(database_url))
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        for table in ("log_leaves", "log_nodes"):
            if sqlite:
                (trigger,) = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": f"{table}_no_delete"}
                ).one()
                conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
            if table == "log_leaves":
                conn.execute(text("DELETE FROM log_leaves WHERE idx >= :k"), {"k": keep})
            else:
                for level in range(32):  # a subtree (level, idx) covers leaves [idx << level, (idx + 1) << level)
                    conn.execute(
                        text("DELETE FROM log_nodes WHERE level = :l AND (idx + 1) * :w > :k"),
                        {"l": level, "w": 1 << level, "k": keep},
                    )
            if sqlite:
                conn.execute(text(trigger))
            else:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))
    engine.dispose()


def _log_size(database_url: str) -> int:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        size = conn.execute(text("SELECT count(*) FROM log_leaves")).scalar_one()
    engine.dispose()
    return int(size)


def _health(node: RunningNode) -> dict[str, str]:
    tls = ClientTls.from_pki(node.pki, "province-admin")
    creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
    out = {}
    with grpc.secure_channel(node.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", LIVENESS, READINESS, *SERVICE_NAMES):
            status = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return out


def _refused_inconsistent(call: Callable[[], object], database_url: str) -> None:
    with refused("UNAVAILABLE", "LOG_INCONSISTENT", database_url=database_url):
        call()


def test_a_log_that_lost_its_signed_tail_takes_no_more_changes(
    node: RunningNode, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's measurement: the node's log cut below the checkpoint it signed. It used to stay SERVING,
    take writes and give out receipts for indices its signed tree holds with other entries; now every
    mutation is refused with UNAVAILABLE LOG_INCONSISTENT, nothing is written, the write services are
    NOT_SERVING, and one ERROR line LOG_INCONSISTENT (no traceback) gives the sizes and roots."""
    caplog.set_level(logging.INFO)
    s1, s2 = node.client("school-S1", retry=NO_RETRY), node.client("school-S2", retry=NO_RETRY)
    admin = node.client("province-admin", retry=NO_RETRY)
    codes = []
    for _ in range(3):
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), 1)
        s2.accept_transfer(s1.initiate_transfer(code, "S2").transfer.id)
        codes.append(code)
    assert node.node is not None
    signed = node.run(node.node.publish_checkpoint)
    assert signed is not None and signed.size == 6
    assert set(_health(node).values()) == {"SERVING"}

    _cut_tail(database_url, keep=2)
    code = new_lookup_code()
    # Entry 2 of the signed tree is another one: the first change that would append finds the log cut...
    _refused_inconsistent(lambda: s2.initiate_transfer(codes[0], "S3"), database_url)
    # ...and from then on no change at all is taken, logged or not.
    _refused_inconsistent(lambda: s1.register_record(code, new_national_id(), 1), database_url)
    _refused_inconsistent(lambda: admin.register_school("S4", "Trường S4"), database_url)
    assert _log_size(database_url) == 2  # no receipt for a position the signed tree gives another entry

    health = _health(node)
    assert {name for name, status in health.items() if status == "NOT_SERVING"} == {*WRITE_SERVICE_NAMES, READINESS}
    assert health[""] == health[LIVENESS] == "SERVING"  # the process serves reads: the signed checkpoints, the records
    assert s1.get_checkpoint().tree_size == 6
    assert s2.get_record(codes[1]).lookup_code == codes[1]
    with pytest.raises(Unavailable) as info:  # nor is anything signed over it
        node.run(node.node.publish_checkpoint)
    assert info.value.reason == "LOG_INCONSISTENT"

    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    (line,) = lines
    assert line.getMessage().startswith("LOG_INCONSISTENT") and line.exc_info is None
    fields = vars(line)
    assert (fields["signed_size"], fields["signed_root"], fields["tree_size"]) == (6, signed.root.hex(), 2)
    assert len(fields["root"]) == 64


def test_a_log_found_inconsistent_at_a_publication_closes_the_node(
    node: RunningNode, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored hash changed on the tree's right edge: the next publication finds that the log no longer
    extends the signed checkpoint; from then on mutations are refused (UNAVAILABLE LOG_INCONSISTENT) and the
    one ERROR line names both roots."""
    caplog.set_level(logging.INFO)
    s1 = node.client("school-S1", retry=NO_RETRY)

    def initiate() -> None:
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), 1)
        s1.initiate_transfer(code, "S2")

    for _ in range(8):
        initiate()
    assert node.node is not None
    node.run(node.node.publish_checkpoint)
    note = s1.get_checkpoint()
    assert note.tree_size == 8
    signed_root = base64.b64decode(note.checkpoint.splitlines()[2])
    # The hash over entries 0..7 (level 3, index 0): the root of the signed tree, and part of every later one.
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS log_nodes_no_update"))
        else:
            conn.execute(text("ALTER TABLE log_nodes DISABLE TRIGGER log_nodes_append_only"))
        conn.execute(text("UPDATE log_nodes SET hash = :h WHERE level = 3 AND idx = 0"), {"h": bytes(32)})
    engine.dispose()
    initiate()  # entry 8: its receipt was given before the damage could be found
    with pytest.raises(Unavailable) as info:  # found now, if the node's own publisher has not found it first
        node.run(node.node.publish_checkpoint)
    assert info.value.reason == "LOG_INCONSISTENT"
    _refused_inconsistent(lambda: s1.register_record(new_lookup_code(), new_national_id(), 1), database_url)
    assert _log_size(database_url) == 9 and s1.get_checkpoint().tree_size == 8
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.getMessage().startswith("LOG_INCONSISTENT") and line.exc_info is None
    fields = vars(line)
    assert (fields["cause"], fields["signed_size"], fields["signed_root"], fields["tree_size"]) == (
        "LOG_INCONSISTENT",
        8,
        signed_root.hex(),
        9,
    )

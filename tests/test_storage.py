"""Storage on each engine: migrations, database-level guards, and the group-commit writer."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, insert
from sqlalchemy.exc import IntegrityError

from storage import migrate
from storage.database import open_database, sync_url
from storage.repositories import SqlUnitOfWork, to_us
from storage.schema import metadata, transfers
from storage.writer import Writer
from transfer.domain.errors import AlreadyExists, Unavailable
from transfer.domain.federation import Federation
from transfer.domain.logbook import LogGate, LogInconsistent, tree_root
from transfer.domain.model import (
    MessageKind,
    OutboxBacklog,
    OutboxMessage,
    OutboxState,
    Record,
    RecordLevel,
    School,
    StoredCheckpoint,
    Transfer,
    TransferScope,
    TransferState,
)
from transfer.domain.pages import PagePolicy
from transfer.domain.ports import ReadAhead, UnitOfWork
from transfer.domain.signatures import SigningTrust
from transfer.ledger import merkle

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_migrations_build_exactly_the_schema(database_url: str) -> None:
    """Upgrading to head yields the tables the code declares (Alembic finds no difference), twice over."""
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)  # idempotent
    assert migrate.current_revision(database_url) == migrate.head_revision()
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_database_allows_one_open_transfer_per_record(database_url: str) -> None:
    """Even bypassing the rules, the database refuses a second open transfer of one record."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("S1", "A", "01", True, NOW, NOW))
        uow.records.add(Record("c" * 32, "001234567890", RecordLevel.PRIMARY, "S1", None, NOW, NOW))
    row = {
        "lookup_code": "c" * 32, "from_school": "S1", "from_province": "01", "to_school": "S2",
        "to_province": "01", "scope": 1, "state": 1, "reason": "", "created_at_us": to_us(NOW),
        "deadline_us": to_us(NOW), "initiated_by": "t",
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(transfers).values(id="1" * 32, **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(transfers).values(id="2" * 32, **row))
    with engine.begin() as conn:  # a closed one may coexist
        conn.execute(insert(transfers).values(id="3" * 32, **{**row, "state": 3}))
    engine.dispose()


class _CountingCursor:
    """The driver's cursor, counting the statements sent through it."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.executed = 0

    def execute(self, *args: Any) -> Any:
        self.executed += 1
        return self.cursor.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def test_rows_read_ahead_come_from_memory_and_changes_are_read_back(database_url: str) -> None:
    """The writer's read-ahead: one statement per table for a whole batch's hints; `get` then answers
    from memory exactly what the database would (absent rows too), and a row the batch changes is read again."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    later = NOW + timedelta(hours=1)
    record = Record("a" * 32, "001234567890", RecordLevel.PRIMARY, "S1", None, NOW, NOW)
    transfer = Transfer(
        "1" * 32, record.lookup_code, "S1", "01", "S2", "01", TransferScope.INTRA_PROVINCE,
        TransferState.REQUESTED, "", NOW, NOW + timedelta(days=7), None, "teacher", None, salt=b"s" * 16,
    )  # fmt: skip
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("S1", "A", "01", True, NOW, NOW))
        uow.schools.add(School("S2", "B", "01", True, NOW, NOW))
        uow.records.add(record)
        uow.transfers.add(transfer)
        uow.records.update(replace(record, open_transfer_id=transfer.id))

    def reads(u: UnitOfWork) -> tuple[object, ...]:
        return (
            u.transfers.get(transfer.id),
            u.records.get(record.lookup_code),
            u.schools.get("S2"),
            u.records.get("b" * 32),  # no such record
            u.schools.get("S9"),  # no such school
        )

    with engine.begin() as conn:
        want = reads(SqlUnitOfWork(conn))
        assert want[0] == transfer and want[3] is None and want[4] is None
        uow = SqlUnitOfWork(conn)
        counter = _CountingCursor(uow.runner.cursor)
        uow.runner.cursor = counter
        uow.read_ahead([ReadAhead(transfers=(transfer.id,)), ReadAhead(records=("b" * 32,), schools=("S9",))])
        assert counter.executed == 3  # transfers; records of the transfers and hints; schools
        assert reads(uow) == want and counter.executed == 3  # from memory

        uow.records.update(replace(record, custodian_school="S2", open_transfer_id=None, updated_at=later))
        uow.schools.update(School("S2", "B", "01", False, NOW, later))
        uow.records.add(Record("b" * 32, "001234567891", RecordLevel.PRIMARY, "S1", None, NOW, NOW))
        moved, s2, added = uow.records.get(record.lookup_code), uow.schools.get("S2"), uow.records.get("b" * 32)
        assert moved is not None and moved.custodian_school == "S2" and moved.updated_at == later
        assert s2 is not None and not s2.active
        assert added is not None and added.custodian_school == "S1"
        assert counter.executed == 3 + 3 + 3  # the three writes, and the three rows read again

        # A transfer the unit of work has already read still brings its record and school along.
        uow = SqlUnitOfWork(conn)
        counter = _CountingCursor(uow.runner.cursor)
        uow.runner.cursor = counter
        assert uow.transfers.get(transfer.id) == transfer and counter.executed == 1
        uow.read_ahead([ReadAhead(transfers=(transfer.id,))])
        assert counter.executed == 3  # records, schools; not the transfer again
        assert uow.records.get(record.lookup_code) == moved and uow.schools.get("S2") == s2
        assert counter.executed == 3
    engine.dispose()


def _add_school(code: str) -> object:
    def command(uow: UnitOfWork) -> str:
        uow.schools.add(School(code, code, "01", True, NOW, NOW))
        return code

    return command


def _fail_after_write(uow: UnitOfWork) -> None:
    uow.schools.add(School("BAD", "bad", "01", True, NOW, NOW))
    uow.publish("never announced")
    raise RuntimeError("refused after writing")


def test_writer_isolates_failures_within_a_batch(database_url: str) -> None:
    """A command that fails after writing is undone entirely; its batch neighbours still commit (re-run alone)."""
    migrate.upgrade(database_url)
    announced: list[object] = []

    async def scenario() -> list[object]:
        db = open_database(database_url)
        writer = Writer(db, after_commit=announced.extend)
        writer.start()
        results = await asyncio.gather(
            writer.submit(_add_school("A")),  # type: ignore[arg-type]
            writer.submit(_fail_after_write),
            writer.submit(_add_school("B")),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        codes = await db.read(lambda conn: [s.code for s in SqlUnitOfWork(conn).schools.page(None, 10)])
        await writer.stop()
        await db.close()
        assert writer.batches == 2  # the batch was rolled back; A and B were re-run on their own
        return [*results, codes]

    a, bad, b, codes = asyncio.run(scenario())
    assert (a, b) == ("A", "B") and isinstance(bad, RuntimeError)
    assert codes == ["A", "B"]
    assert announced == []


def _school_codes(conn: Connection) -> list[str]:
    return [s.code for s in SqlUnitOfWork(conn).schools.page(None, 10)]


def test_a_sqlite_database_that_cannot_be_opened_answers_reads_unavailable(tmp_path: Path) -> None:
    """A read that cannot open the SQLite file (its directory moved away: "unable to open database file")
    raises Unavailable (DATABASE_UNAVAILABLE) from the driver's error, not the error itself; once the
    directory is back, the next read opens the file and succeeds. A statement's own error (no such table)
    is not the database's: it surfaces as it is, and the read after it succeeds."""
    home, away = tmp_path / "db", tmp_path / "away"
    home.mkdir()
    url = f"sqlite:///{home / 'node.db'}"
    migrate.upgrade(url)

    def bad_statement(conn: Connection) -> None:
        SqlUnitOfWork(conn).runner.cursor.execute("SELECT * FROM no_such_table")  # type: ignore[attr-defined]

    async def scenario() -> None:
        db = open_database(url)
        try:
            home.rename(away)
            with pytest.raises(Unavailable) as refused:
                await db.read(_school_codes)
            assert refused.value.reason == "DATABASE_UNAVAILABLE"
            assert "unable to open database file" in refused.value.message
            assert isinstance(getattr(refused.value.__cause__, "orig", None), sqlite3.OperationalError)
            away.rename(home)
            assert await db.read(_school_codes) == []
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                await db.read(bad_statement)
            assert await db.read(_school_codes) == []
        finally:
            await db.close()

    asyncio.run(scenario())


def test_a_broken_sqlite_read_connection_is_replaced_by_the_next_read(tmp_path: Path) -> None:
    """The kept SQLite read connection breaks (closed under the database object: the injected fault): the
    read that finds it fails as the programming error it is, not as the database being unavailable, and
    the next read opens another connection and succeeds."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate.upgrade(url)

    async def scenario() -> None:
        db = open_database(url)
        try:
            driver = await db.read(lambda conn: conn.connection.driver_connection)
            driver.close()
            with pytest.raises(sqlite3.ProgrammingError):
                await db.read(_school_codes)
            assert await db.read(_school_codes) == []
        finally:
            await db.close()

    asyncio.run(scenario())


def _one_batch(
    database_url: str, commands: Sequence[Any], *, before: Sequence[Any] = ()
) -> tuple[list[object], list[str], int]:
    """Submit `commands` together (one batch, unless the writer splits it), after
    `before` one by one; their outcomes, the schools' codes after, the writer's batches."""

    async def scenario() -> tuple[list[object], list[str], int]:
        db = open_database(database_url)
        writer = Writer(db)
        writer.start()
        for command in before:
            await writer.submit(command)
        results = await asyncio.gather(*(writer.submit(c) for c in commands), return_exceptions=True)
        codes = await db.read(lambda conn: [s.code for s in SqlUnitOfWork(conn).schools.page(None, 10)])
        await writer.stop()
        await db.close()
        return list(results), codes, writer.batches

    return asyncio.run(scenario())


def test_writer_finds_the_command_a_database_error_belongs_to(database_url: str) -> None:
    """A write the database refuses (here a duplicate key) fails only its own command.

    On PostgreSQL the batch runs in pipeline mode, where the error of a write
    surfaces later, at the next command's read or at the end of the batch: the
    writer must still roll back, re-run each command alone and blame only the
    culprit, with the same idempotency records as any batch."""
    migrate.upgrade(database_url)

    def duplicate_then_read(uow: UnitOfWork) -> None:
        uow.schools.add(School("DUP", "again", "01", True, NOW, NOW))  # already there: the database refuses

    def read_after(code: str) -> object:
        def command(uow: UnitOfWork) -> str:
            assert uow.schools.get("DUP") is not None  # a read right after the refused write
            uow.schools.add(School(code, code, "01", True, NOW, NOW))
            return code

        return command

    (a, dup, b, c), codes, _ = _one_batch(
        database_url,
        [_add_school("A"), duplicate_then_read, read_after("B"), _add_school("C")],
        before=[_add_school("DUP")],
    )
    assert (a, b, c) == ("A", "B", "C")
    assert isinstance(dup, (sqlite3.IntegrityError, psycopg.IntegrityError))  # the driver's own error
    assert codes == ["A", "B", "C", "DUP"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_statement_timeout_is_the_commands_fault_not_the_databases(database_url: str) -> None:
    """A statement the server cancels (a timeout) is an error of its command: the batch is re-run
    command by command, the others commit, and nothing is reported as the database being away."""
    migrate.upgrade(database_url)

    def too_slow(uow: UnitOfWork) -> None:
        cursor = uow.runner.cursor  # type: ignore[attr-defined]
        cursor.execute("SET LOCAL statement_timeout = 50")
        cursor.execute("SELECT pg_sleep(2)")
        cursor.fetchone()

    (a, slow, b), codes, _ = _one_batch(database_url, [_add_school("A"), too_slow, _add_school("B")])
    assert (a, b) == ("A", "B")
    assert isinstance(slow, psycopg.errors.QueryCanceled)
    assert codes == ["A", "B"]


def test_writer_drains_queue_on_stop(database_url: str) -> None:
    """Stopping the writer finishes every queued command, then refuses new ones."""
    migrate.upgrade(database_url)

    async def scenario() -> None:
        db = open_database(database_url)
        writer = Writer(db, max_batch=4)
        writer.start()
        pending = [asyncio.ensure_future(writer.submit(_add_school(f"S{i}"))) for i in range(10)]  # type: ignore[arg-type]
        await asyncio.sleep(0)
        await writer.stop()
        assert [p.result() for p in pending] == [f"S{i}" for i in range(10)]
        from storage.writer import WriterStopped

        with pytest.raises(WriterStopped):
            await writer.submit(_add_school("late"))  # type: ignore[arg-type]
        await db.close()

    asyncio.run(scenario())


def _refuse(uow: UnitOfWork) -> None:
    raise AlreadyExists("SCHOOL_EXISTS", "refused before writing")


def test_refusal_in_a_batch_costs_nothing(database_url: str) -> None:
    """A command refused before writing leaves its batch alone: one transaction commits the others."""
    migrate.upgrade(database_url)

    results, codes, batches = _one_batch(database_url, [_add_school("A"), _refuse, _add_school("B")])
    assert results[0] == "A" and results[2] == "B" and isinstance(results[1], AlreadyExists)
    assert codes == ["A", "B"] and batches == 1


def _append(data: bytes) -> object:
    def command(uow: UnitOfWork) -> int:
        return uow.log.append(data)

    return command


def _append_then_fail(uow: UnitOfWork) -> None:
    uow.log.append(b"doomed")
    raise RuntimeError("fails after appending")


def test_log_appends_commit_with_their_batch_or_not_at_all(database_url: str) -> None:
    """Log indices are handed out in order; a rolled-back append leaves no gap and no trace."""
    migrate.upgrade(database_url)

    async def scenario() -> tuple[list[object], list[bytes]]:
        db = open_database(database_url)
        writer = Writer(db)
        writer.start()
        first = await asyncio.gather(
            writer.submit(_append(b"a")),  # type: ignore[arg-type]
            writer.submit(_append_then_fail),
            writer.submit(_append(b"b")),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        later = await writer.submit(_append(b"c"))  # type: ignore[arg-type]
        leaves = await db.read(lambda conn: SqlUnitOfWork(conn).log.leaves(0, 10))
        await writer.stop()
        await db.close()
        return [*first, later], leaves

    results, leaves = asyncio.run(scenario())
    assert results[0] == 0 and results[2] == 1 and results[3] == 2 and isinstance(results[1], RuntimeError)
    assert leaves == [b"a", b"b", b"c"]


def test_a_log_behind_what_the_node_signed_rolls_back_its_batch_and_closes_the_writer(database_url: str) -> None:
    """The writer knows a larger tree was signed than the log holds (its tail was lost): the batch that would
    append is rolled back whole, its neighbours that append nothing included, and every later command is
    refused with UNAVAILABLE LOG_INCONSISTENT, once the gate has told its listener why (sizes and roots)."""
    migrate.upgrade(database_url)
    told: list[LogInconsistent] = []

    async def scenario() -> tuple[list[object], object, list[str], list[bytes]]:
        db = open_database(database_url)
        gate = LogGate()
        gate.on_break(told.append)
        writer = Writer(db, gate=gate)
        writer.start()
        await writer.submit(_append(b"a"))  # type: ignore[arg-type]
        root = merkle.leaf_hash(b"a")
        writer.log_state.signed_at_least(StoredCheckpoint(3, bytes(32), "note", NOW))  # signed, then lost
        batch = await asyncio.gather(
            writer.submit(_add_school("A")),  # type: ignore[arg-type]
            writer.submit(_append(b"b")),  # type: ignore[arg-type]
            writer.submit(_add_school("B")),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        later = await asyncio.gather(writer.submit(_add_school("C")), return_exceptions=True)  # type: ignore[arg-type]
        codes = await db.read(_school_codes)
        leaves = await db.read(lambda conn: SqlUnitOfWork(conn).log.leaves(0, 10))
        await writer.stop()
        await db.close()
        assert told and told[0].root == root
        return [*batch], later[0], codes, leaves

    batch, later, codes, leaves = asyncio.run(scenario())
    for result in [*batch, later]:
        assert isinstance(result, Unavailable) and result.reason == "LOG_INCONSISTENT", result
    assert codes == [] and leaves == [b"a"]
    (cause,) = told
    assert (cause.reason, cause.signed_size, cause.size) == ("LOG_SHRANK", 3, 1)


def test_many_rows_of_one_batch_are_all_written_in_order(database_url: str) -> None:
    """A batch's staged rows of one table (here 77 log leaves and their tree nodes) arrive whole and in order."""
    migrate.upgrade(database_url)
    data = [f"leaf {i}".encode() for i in range(77)]

    def append_all(uow: UnitOfWork) -> list[int]:
        return [uow.log.append(d) for d in data]

    async def scenario() -> tuple[object, list[bytes], bytes]:
        db = open_database(database_url)
        writer = Writer(db)
        writer.start()
        indices = await writer.submit(append_all)
        leaves, root = await db.read(
            lambda conn: (SqlUnitOfWork(conn).log.leaves(0, 100), tree_root(SqlUnitOfWork(conn), 77))
        )
        await writer.stop()
        await db.close()
        return indices, leaves, root

    indices, leaves, root = asyncio.run(scenario())
    assert indices == list(range(77))
    assert leaves == data
    assert root == merkle.root([merkle.leaf_hash(d) for d in data])  # the stored nodes are the tree's


class _Clock:
    def now(self) -> datetime:
        return NOW


def test_a_delivery_outcome_is_recorded_once_against_the_stored_message(database_url: str) -> None:
    """The dispatcher records an attempt's outcome from a message it read before sending. When two attempts
    overlapped (a read begun before the other's commit), the second outcome finds the message no longer pending
    and records nothing: one acknowledgement in the log, and a late retry or refusal cannot undo the delivery."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    federation = Federation("01", {}, None, SigningTrust([]), PagePolicy(), 40, _Clock())
    stale = OutboxMessage(
        0, "1" * 32, "79", MessageKind.RESOLVE, b"{}", OutboxState.PENDING, 0, NOW, "", NOW
    )  # fmt: skip
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.outbox.add(stale)
    with engine.begin() as conn:
        (message,) = SqlUnitOfWork(conn).outbox.due(NOW, 10)
    for _ in range(2):  # both overlapping attempts got the peer's (same) receipt
        with engine.begin() as conn:
            uow = SqlUnitOfWork(conn)
            federation.delivered(uow, message, b"receipt", 5)
            uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        federation.retry(uow, message, "deadline exceeded", NOW)  # a third attempt that timed out, late
        federation.failed(uow, message, "refused")
        uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        stored = uow.outbox.get(message.id)
        leaves = uow.log.leaves(0, 10)
    engine.dispose()
    assert stored is not None and stored.state is OutboxState.DELIVERED and stored.attempts == 0
    assert stored.receipt == b"receipt" and stored.last_error == ""
    assert len(leaves) == 1  # one MESSAGE_ACKNOWLEDGED


def test_the_next_attempt_ignores_messages_waiting_behind_another(database_url: str) -> None:
    """A cancellation queued behind an offer that backs off (the peer is down) is not due before the offer is
    delivered: the dispatcher's next wake-up is the offer's retry time, not now (else it would spin)."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    retry_at = NOW + timedelta(seconds=60)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.outbox.add(OutboxMessage(
            0, "1" * 32, "79", MessageKind.OFFER, b"x" * 80, OutboxState.PENDING, 7, retry_at, "UNAVAILABLE", NOW
        ))  # fmt: skip
        uow.outbox.add(
            OutboxMessage(0, "1" * 32, "79", MessageKind.CANCEL_REQUEST, b"{}", OutboxState.PENDING, 0, NOW, "", NOW)
        )
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        due, next_at = uow.outbox.due(NOW, 10), uow.outbox.next_attempt()
    with engine.begin() as conn:  # another transfer's message, due now, is due now
        uow = SqlUnitOfWork(conn)
        uow.outbox.add(
            OutboxMessage(0, "2" * 32, "79", MessageKind.RESOLVE, b"{}", OutboxState.PENDING, 0, NOW, "", NOW)
        )
    with engine.begin() as conn:
        later = SqlUnitOfWork(conn).outbox.next_attempt()
    engine.dispose()
    assert due == [] and next_at == retry_at
    assert later == NOW


def test_a_peer_answering_again_brings_its_waiting_messages_forward(database_url: str) -> None:
    """When a delivery to a peer succeeds after it could not be reached, one statement makes its PENDING
    messages that wait past now due now. Messages already due, delivered or failed, and other peers'
    messages keep their schedule; attempts are left as they were."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    later, much_later, earlier = NOW + timedelta(seconds=5), NOW + timedelta(seconds=60), NOW - timedelta(seconds=1)
    rows = [  # peer, state, next attempt
        ("79", OutboxState.PENDING, much_later),
        ("79", OutboxState.PENDING, later),
        ("79", OutboxState.PENDING, earlier),
        ("79", OutboxState.DELIVERED, much_later),
        ("79", OutboxState.FAILED, much_later),
        ("48", OutboxState.PENDING, much_later),
    ]
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        for i, (peer, state, at) in enumerate(rows):
            uow.outbox.add(OutboxMessage(0, f"{i + 1:032x}", peer, MessageKind.OFFER, b"x", state, 9, at, "", NOW))
    with engine.begin() as conn:
        SqlUnitOfWork(conn).outbox.bring_forward("79", NOW)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        stored = [uow.outbox.get(i + 1) for i in range(len(rows))]
        due = [m.transfer_id for m in uow.outbox.due(NOW, 10)]
    engine.dispose()
    brought = [NOW, NOW, earlier, much_later, much_later, much_later]
    assert [m.next_attempt_at for m in stored if m is not None] == brought
    assert all(m is not None and m.attempts == 9 for m in stored)
    assert due == [f"{3:032x}", f"{1:032x}", f"{2:032x}"]


def test_due_messages_of_full_peers_are_left_out(database_url: str) -> None:
    """The dispatcher asks for due messages without the peers already holding all the
    attempts it gives one peer: the others' messages come first, and the next wake-up
    is not "now" because of a full peer's backlog (else it would spin)."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    later = NOW + timedelta(seconds=30)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        for i, (peer, at) in enumerate([("48", NOW), ("48", NOW), ("79", NOW), ("31", later), ("48", NOW)]):
            uow.outbox.add(
                OutboxMessage(0, f"{i + 1:032x}", peer, MessageKind.OFFER, b"x", OutboxState.PENDING, 0, at, "", NOW)
            )
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        everyone = [m.peer for m in uow.outbox.due(NOW, 10)]
        without_48 = [m.peer for m in uow.outbox.due(NOW, 10, {"48"})]
        without_both = [m.peer for m in uow.outbox.due(NOW, 10, ["79", "48", "48"])]
        next_at = [uow.outbox.next_attempt(skip) for skip in ((), {"48"}, {"48", "79"}, {"48", "79", "31"})]
    engine.dispose()
    assert everyone == ["48", "48", "79", "48"]
    assert without_48 == ["79"] and without_both == []
    assert next_at == [NOW, NOW, later, None]


def test_outbox_backlog_counts_undelivered_messages_by_peer(database_url: str) -> None:
    """The metrics' outbox read: per peer, pending (with the oldest's time and most attempts) and failed messages;
    delivered ones are not counted, and a peer with none undelivered is absent."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    rows = [  # peer, state, attempts, created
        ("79", OutboxState.PENDING, 3, NOW - timedelta(minutes=5)),
        ("79", OutboxState.PENDING, 7, NOW),
        ("79", OutboxState.FAILED, 1, NOW - timedelta(days=1)),
        ("79", OutboxState.DELIVERED, 1, NOW - timedelta(days=2)),
        ("48", OutboxState.FAILED, 2, NOW),
        ("31", OutboxState.DELIVERED, 1, NOW),
    ]
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        for i, (peer, state, attempts, created) in enumerate(rows):
            uow.outbox.add(OutboxMessage(0, f"{i + 1:032x}", peer, MessageKind.OFFER, b"x", state, attempts, NOW, "",
                                         created))  # fmt: skip
    with engine.begin() as conn:
        backlog = sorted(SqlUnitOfWork(conn).outbox.backlog(), key=lambda b: b.peer)
    engine.dispose()
    assert backlog == [
        OutboxBacklog("48", 0, 1, None, 0),
        OutboxBacklog("79", 2, 1, NOW - timedelta(minutes=5), 7),
    ]


def test_the_writers_observer_hears_of_each_transaction(database_url: str) -> None:
    """The writer tells its observer each committed batch's size and each failed transaction's reason
    (ROLLED_BACK for a batch undone by a command that failed after writing)."""
    migrate.upgrade(database_url)
    committed: list[int] = []
    failed: list[tuple[str, int]] = []

    class Observer:
        def committed(self, commands: int, seconds: float) -> None:
            assert seconds >= 0
            committed.append(commands)

        def failed(self, reason: str, commands: int) -> None:
            failed.append((reason, commands))

    async def scenario() -> None:
        db = open_database(database_url)
        writer = Writer(db, observer=Observer())
        writer.start()
        assert writer.waiting == 0
        await asyncio.gather(
            writer.submit(_add_school("A")),  # type: ignore[arg-type]
            writer.submit(_fail_after_write),
            writer.submit(_add_school("B")),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        await writer.stop()
        await db.close()

    asyncio.run(scenario())
    assert failed == [("ROLLED_BACK", 3), ("ROLLED_BACK", 1)]  # the batch, then the culprit alone
    assert committed == [1, 1]  # A and B, each re-run alone

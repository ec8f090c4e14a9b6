"""Engines and the two ways the service touches its database: reads, and
write transactions (used only by the single writer, see `storage.writer`).

The execution mechanism is chosen here, per engine, and nowhere else
(DESIGN §9):

* SQLite: a synchronous engine called directly on the event loop. Its
  statements take microseconds, so a thread hop would cost more than it saves,
  and with a single writer the loop thread never contends for the file lock.
* PostgreSQL: psycopg 3's synchronous driver. The writer's transactions run
  on one dedicated thread with one kept connection (a thread hop per group
  commit, not per request: the batch's statements then cost what the driver
  costs, and the loop keeps serving while they are on the wire); reads run on
  a small pool of threads and pooled connections. An earlier version used
  SQLAlchemy's async engine with `run_sync`: every statement then crossed a
  greenlet and the asyncio driver, which doubled the node's CPU per mutation.
  The writer's transaction runs in psycopg's pipeline mode, so its writes
  cost no round trip of their own (see `storage.sql.Runner`).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import functools
import math
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from transfer.domain.errors import Unavailable

T = TypeVar("T")

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# How long SQLite waits for a lock another process holds before answering SQLITE_BUSY.
BUSY_TIMEOUT_MS = 5000
# The reasons of the UNAVAILABLE refusals this module gives: the database down, silent, short of room or
# locked, the node closing it. The node's metrics create their series from this list (tests/test_metrics.py
# checks it names every reason the module gives).
UNAVAILABLE_REASONS = ("DATABASE_UNAVAILABLE", "DATABASE_BUSY", "SHUTTING_DOWN")
# How long a connection to PostgreSQL may take: an unreachable host is an error, soon.
CONNECT_TIMEOUT_S = 10
# How long the node waits on PostgreSQL for one transaction (a write batch, a read) before
# it answers UNAVAILABLE (database.unavailable_after_seconds): far above the longest it waits
# on a healthy server (a transfer-import batch holding the write lock, about 0.3 s), and, a
# call possibly waiting for the batch before its own, twice it fits in the CLI's 10 s deadline.
UNAVAILABLE_AFTER_S = 4.0


def sync_url(url: str) -> str:
    """The URL SQLAlchemy's synchronous engine wants (psycopg 3 for PostgreSQL)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


class DatabaseUnreachable(Exception):
    """The database could not be opened or connected to; the message says which and why, in one line."""


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as a node's database URL, or None."""
    try:
        drivername = make_url(url).drivername
    except (sa_exc.ArgumentError, ValueError):
        return "not a database URL: expected sqlite:///path.db or postgresql://user@host:port/db"
    if drivername not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"):
        return f"{drivername}: expected sqlite:///path.db or postgresql://user@host:port/db"
    return None


def unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    """A one-line account of a failed connection (the driver's message, the URL without its password)."""
    cause = getattr(exc, "orig", None) or exc
    reason = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    return DatabaseUnreachable(f"cannot connect to {describe(url)}: {reason}")


def connect(engine: Engine, url: str) -> Connection:
    """`engine.connect()`, a failure to reach the database raised as DatabaseUnreachable."""
    try:
        return engine.connect()
    except Exception as exc:
        if _connect_error(exc):
            raise unreachable(url, exc) from None
        raise


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names (None: not SQLite, or an in-memory database)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return u.database


def describe(url: str) -> str:
    """The URL with any password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file `path` that can only read it (mode=ro: it never creates or writes the
    file; SQLite may make the -shm a WAL reader needs), in autocommit: transactions are begun explicitly."""
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )


def sqlite_engine(
    url: str, *, writer: bool, synchronous: str = "FULL", pool_size: int = 1, readonly: bool = False
) -> Engine:
    """A SQLite engine in WAL mode whose transactions we begin ourselves.

    pysqlite's own transaction handling would defer BEGIN (and take the
    write lock too late), so it is switched off and BEGIN (IMMEDIATE for the writer,
    which takes the write lock up front) is emitted on our behalf.

    `readonly` opens the file read-only and leaves its journal mode alone: a reader of a
    backup (transfer-verify-log --database) must not change a byte of it, or its SHA-256.
    """
    if synchronous.upper() not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite synchronous must be one of {SQLITE_SYNCHRONOUS}")
    extra: dict[str, Any] = {}
    path = sqlite_file(url)
    if readonly and path is not None:
        file = Path(path)
        extra["creator"] = lambda: connect_readonly(file)
    engine = create_engine(
        sync_url(url),
        paramstyle="named",
        connect_args={"check_same_thread": False},
        pool_size=pool_size,
        max_overflow=4,
        **extra,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]

    return engine


class Database(abc.ABC):
    """Runs synchronous repository code in a transaction, the engine's way."""

    url: str

    @abc.abstractmethod
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a read transaction (a consistent snapshot)."""

    @abc.abstractmethod
    async def write(self, fn: Callable[[Connection], T], *, busy: bool = False) -> T:
        """Run `fn` in a write transaction and commit; roll back if it raises.

        `busy` says more work is arriving: an engine may then wait for the
        commit off the event loop so requests keep flowing meanwhile.
        """

    @abc.abstractmethod
    async def close(self) -> None: ...


class SqliteDatabase(Database):
    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = url
        self._writer = sqlite_engine(url, writer=True, synchronous=synchronous)
        self._reader = sqlite_engine(url, writer=False, synchronous=synchronous, pool_size=2)
        self._wconn: Connection | None = None
        self._rconn: Connection | None = None
        # One thread waits for the disk at COMMIT, or for a write lock another process
        # holds, while the loop serves (see write and _begin).
        self._commit_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")

    async def read(self, fn: Callable[[Connection], T]) -> T:
        try:
            return self._read(fn)
        except Exception as exc:
            # The database, not the read, failed (locked, I/O, cannot be opened):
            # UNAVAILABLE, as for writes, rather than INTERNAL.
            unavailable = _sqlite_unavailable(exc, reading=True)
            if unavailable is not None:
                raise unavailable from exc
            raise

    def _read(self, fn: Callable[[Connection], T]) -> T:
        # Reads run on the event loop, one at a time, on one kept connection:
        # a read transaction is then two driver calls, not a pool checkout and
        # a SQLAlchemy transaction (about 25 us instead of 160 us here).
        if self._rconn is None or self._rconn.closed:
            self._rconn = self._reader.connect()
        conn = self._rconn
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            driver.execute("BEGIN")  # repositories run on the driver cursor (storage.sql.Runner)
            result = fn(conn)
            driver.execute("ROLLBACK")  # a read changed nothing
        except BaseException:
            self._after_failed_read(conn, driver)
            raise
        return result

    def _after_failed_read(self, conn: Connection, driver: sqlite3.Connection) -> None:
        """Leave the kept read connection out of any transaction for the next read;
        drop it if that fails (the next read then opens another)."""
        try:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
        except Exception:  # e.g. a closed connection: it cannot serve another read
            self._rconn = None
            with contextlib.suppress(Exception):
                conn.invalidate()  # the pool must not hand it out again
                conn.close()

    async def write(self, fn: Callable[[Connection], T], *, busy: bool = False) -> T:
        try:
            return await self._write(fn, busy=busy)
        except Exception as exc:
            # The database, not a command, failed (locked, full, read-only, I/O):
            # every command of the batch answers UNAVAILABLE rather than INTERNAL.
            unavailable = _sqlite_unavailable(exc)
            if unavailable is not None:
                raise unavailable from exc
            raise

    async def _write(self, fn: Callable[[Connection], T], *, busy: bool) -> T:
        if self._wconn is None or self._wconn.closed:
            self._wconn = self._writer.connect()  # the writer keeps its connection
        conn = self._wconn
        # The transaction is driven on the driver connection itself, like the
        # statements (storage.sql.Runner): a SQLAlchemy Transaction object and
        # its events cost more than the two statements they send.
        driver = conn.connection.driver_connection
        assert driver is not None
        await self._begin(driver)
        try:
            result = fn(conn)
        except BaseException:
            driver.rollback()
            raise
        try:
            if busy:
                # The commit waits for the disk (fsync with synchronous=FULL): under
                # load, let the event loop serve requests meanwhile, which also
                # gathers the next group commit. Nobody else uses this connection.
                await asyncio.get_running_loop().run_in_executor(self._commit_thread, driver.commit)
            else:  # a lone command: a thread hop would cost more than it saves
                driver.commit()
        except BaseException:
            if driver.in_transaction:  # e.g. SQLITE_BUSY at COMMIT: leave no transaction open
                driver.rollback()
            raise
        return result

    async def _begin(self, driver: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: the write lock up front, waited for off the event loop.

        With the node the database's only writer, the lock is free and the first
        try takes it at once. When another process holds it (an import, a shell),
        the wait (up to the busy timeout) runs on the commit thread: on the event
        loop it would stop every read and call of the node meanwhile."""
        driver.execute("PRAGMA busy_timeout=0")
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _SQLITE_BUSY:
                raise
        finally:
            driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await asyncio.get_running_loop().run_in_executor(self._commit_thread, driver.execute, "BEGIN IMMEDIATE")

    async def close(self) -> None:
        self._commit_thread.shutdown(wait=False)  # idle: every commit was awaited
        if self._rconn is not None:
            self._rconn.close()
        if self._wconn is not None:
            self._wconn.close()
        self._writer.dispose()
        self._reader.dispose()


# SQLite's primary result codes that say the database, not a command, failed:
# BUSY/LOCKED (another process held the write lock past the busy timeout, or
# for a read, a lock while it recovers the WAL after a crash),
# READONLY, IOERR, FULL, CANTOPEN, PERM. Retrying the same request later may
# succeed; nothing of a failed transaction is kept.
_SQLITE_BUSY = (5, 6)
_SQLITE_FAILED = (3, 8, 10, 13, 14)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it, nearest first: driver errors arrive wrapped by
    SQLAlchemy, the writer or both (a bounded walk: chains can be cyclic)."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            return
        yield cause
        cause = cause.__cause__ or cause.__context__


def _sqlite_unavailable(exc: BaseException, *, reading: bool = False) -> Unavailable | None:
    """UNAVAILABLE for `exc` (or what caused it) when it says the SQLite database cannot be
    written (or, `reading`, read) now."""
    for cause in _causes(exc):
        code = getattr(cause, "sqlite_errorcode", None)
        if isinstance(cause, sqlite3.Error) and code is not None:
            if code & 0xFF in _SQLITE_BUSY:
                if reading:  # e.g. another process recovering the WAL after a crash
                    return Unavailable("DATABASE_BUSY", "another process holds a lock on the database; retry")
                return Unavailable(
                    "DATABASE_BUSY", "another process holds the database's write lock; retry with the same request_id"
                )
            if code & 0xFF in _SQLITE_FAILED:
                if reading:
                    return Unavailable("DATABASE_UNAVAILABLE", f"the node cannot read its database ({cause}); retry")
                return Unavailable(
                    "DATABASE_UNAVAILABLE",
                    f"the node cannot write its database ({cause}); retry with the same request_id",
                )
    return None


# Serialises write transactions of every process using the database (SQLite
# gets the same from BEGIN IMMEDIATE). Sequence numbers read inside the
# transaction are then the true head.
WRITE_LOCK_KEY = 0x686F6362  # "hocb"
_TAKE_WRITE_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"


class PostgresDatabase(Database):
    """`unavailable_after` bounds each transaction: past it, the event loop cuts the connection
    (see `_Watch`), and a link gone silent (a partition, a dead host: no answer, no reset) answers
    UNAVAILABLE then rather than when the kernel gives up on the connection (never, while
    something on the path still acknowledges the packets: measured in docs/operations.md)."""

    def __init__(self, url: str, *, readers: int = 4, unavailable_after: float = UNAVAILABLE_AFTER_S) -> None:
        self.url = url
        self.unavailable_after = unavailable_after
        self._engine: Engine = create_engine(
            sync_url(url),
            pool_size=readers + 1,
            max_overflow=readers,
            # A cut network (not a restart) must end in an error, not a call that hangs for minutes:
            # the kernel drops a connection whose packets go unacknowledged that long.
            connect_args={
                "connect_timeout": min(CONNECT_TIMEOUT_S, max(2, math.ceil(unavailable_after))),
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": int(unavailable_after * 1000),
            },
        )
        self._write_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-writer")
        self._read_threads = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="pg-reader")
        self._wconn: Connection | None = None
        self._wsession: tuple[int, Any] | None = None  # the writer's session on the server: pid, start
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    async def _bounded(self, threads: concurrent.futures.Executor, fn: Callable[[_Watch], T]) -> T:
        """`fn(watch)` on one of `threads`, its connection cut if it takes longer than `unavailable_after`."""
        loop = asyncio.get_running_loop()
        watch = _Watch()
        done = loop.run_in_executor(threads, watch.run, fn)
        timer = loop.call_later(self.unavailable_after, watch.cut)
        try:
            return await done
        finally:
            if watch.finished:  # else the caller went away while the thread waits: the timer still bounds it
                timer.cancel()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        if self._closed:
            raise _closed()
        return await self._bounded(self._read_threads, functools.partial(self._read, fn))

    def _read(self, fn: Callable[[Connection], T], watch: _Watch) -> T:
        if watch.expired:  # waited its time for a reader thread (the others wait on a silent link)
            raise self._silent()
        try:
            conn = self._engine.connect()
        except Exception as exc:
            if _connect_error(exc):
                raise (self._silent() if watch.expired else _unavailable()) from exc
            raise
        with conn:
            try:
                watch.watch(conn)
                with conn.begin():
                    result = fn(conn)
                if watch.done():  # cut as it finished: the socket is shut
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                return result
            except Exception as exc:
                if _lost(conn) or _disconnected(exc):
                    with contextlib.suppress(Exception):
                        conn.invalidate()  # the pool must not hand it out again
                    raise (self._silent() if watch.expired else _unavailable()) from exc
                if _short_of_resources(exc):
                    raise _server_short() from exc
                raise

    async def write(self, fn: Callable[[Connection], T], *, busy: bool = False) -> T:
        if self._closed:
            raise _closed()
        return await self._bounded(self._write_thread, functools.partial(self._write, fn))

    def _write(self, fn: Callable[[Connection], T], watch: _Watch) -> T:
        conn = self._wconn
        fresh = conn is None or conn.closed or conn.invalidated
        if fresh:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._wconn = None
            try:
                conn = self._wconn = self._engine.connect()  # the writer keeps its connection
            except Exception as exc:
                if _connect_error(exc):
                    raise (self._silent() if watch.expired else _unavailable()) from exc
                raise
        assert conn is not None
        try:
            watch.watch(conn)
            if fresh:
                self._open_session(conn)
            result = self._write_in(conn, fn)
            if watch.done():  # cut as it committed: the socket is shut
                self._wconn = None
                with contextlib.suppress(Exception):
                    conn.invalidate()
            return result
        except Exception as exc:
            # Only a broken link is "unavailable"; any other error (a refused
            # statement, a timeout, a bug) goes back to the writer, which re-runs
            # the batch's commands one by one so that only the culprit fails.
            if _lost(conn) or _disconnected(exc):
                self._wconn = None
                with contextlib.suppress(Exception):
                    conn.invalidate()
                # Nothing of the batch may be assumed committed (not even when
                # the link broke during COMMIT): callers retry with their request
                # ids, which the idempotency records make safe.
                raise (self._silent() if watch.expired else _unavailable()) from exc
            if _short_of_resources(exc):  # every command would fail alike: not one command's fault
                raise _server_short() from exc
            raise

    def _open_session(self, conn: Connection) -> None:
        """Ends the writer session this one replaces, if the server still keeps it, and notes this one.

        When the link goes silent mid-transaction, the server keeps that session, and the write
        lock its transaction holds, until it hears the node has gone: after a partition, perhaps
        not for hours (the node's reset was lost), and every batch would wait for the lock. The
        session is named by its start too: after a server restart its process id may be another's."""
        driver = conn.connection.driver_connection
        assert driver is not None
        if self._wsession is not None:  # forgotten only once ended: a new session may fail first
            driver.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s AND backend_start = %s",
                self._wsession,
            )
        row = driver.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
        driver.commit()
        self._wsession = (row[0], row[1]) if row else None

    def _silent(self) -> Unavailable:
        return Unavailable(
            "DATABASE_UNAVAILABLE",
            f"the database did not answer within {self.unavailable_after:g} s; retry with the same request_id",
        )

    def _write_in(self, conn: Connection, fn: Callable[[Connection], T]) -> T:
        with conn.begin():
            driver = conn.connection.driver_connection
            assert driver is not None
            # Pipeline mode: writes go out without waiting for their answers
            # (see storage.sql.Runner); the batch waits only where it reads.
            with driver.pipeline() as pipeline:
                # Queued like a write (the server takes the lock before running
                # what follows); on the driver, as SQLAlchemy's execute costs more.
                driver.execute(_TAKE_WRITE_LOCK)
                conn.info["pipeline"] = pipeline
                try:
                    return fn(conn)
                finally:
                    del conn.info["pipeline"]

    def _close_writer(self) -> None:
        if self._wconn is not None:
            with contextlib.suppress(Exception):
                self._wconn.close()
            self._wconn = None

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._close_writer)
        # Waiting for the threads would block the event loop: wait in a thread.
        await asyncio.to_thread(self._write_thread.shutdown, True)
        await asyncio.to_thread(self._read_threads.shutdown, True)
        self._engine.dispose()


class _Watch:
    """One transaction's hold on its connection's socket, through which the event loop cuts a
    link that stays silent too long (psycopg waits for an answer without a timeout): the thread
    waiting on it then fails at once, as when the server closes the connection, and the
    connection is dropped. The socket is a duplicate, so a cut never reaches a reused number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.expired = False  # cut: the connection is dropped, the transaction answered UNAVAILABLE
        self.finished = False

    def run(self, fn: Callable[[_Watch], T]) -> T:
        try:
            return fn(self)
        finally:
            self.done()

    def watch(self, conn: Connection) -> None:
        """The transaction uses `conn` (until `done`); cut it at once if its time is over."""
        driver = conn.connection.driver_connection
        assert driver is not None
        fd = os.dup(driver.fileno())
        with self._lock:
            self._fd = fd
            if self.expired:
                _shutdown(fd)

    def done(self) -> bool:
        """The transaction is over (cut from now on no more); whether it was cut."""
        with self._lock:
            fd, self._fd = self._fd, None
            self.finished = True
        if fd is not None:
            os.close(fd)
        return self.expired

    def cut(self) -> None:
        """On the event loop, once the transaction took too long."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            if self._fd is not None:
                _shutdown(self._fd)


def _shutdown(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.detach()  # `fd` stays open: the watch closes it


def _lost(conn: Connection) -> bool:
    """Whether the connection to the server is gone (a restart, a dropped link)."""
    if conn.closed or conn.invalidated:
        return True
    try:
        driver = conn.connection.driver_connection
    except Exception:
        return True
    return driver is None or bool(driver.closed) or bool(getattr(driver, "broken", False))


# SQLSTATEs of a lost session: connection exceptions (class 08), and the
# server shutting down or restarting (57P01 admin_shutdown, 57P02
# crash_shutdown, 57P03 cannot_connect_now).
_DISCONNECT_STATES = ("57P01", "57P02", "57P03")


def _disconnected(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, says the session with the server ended.

    Statement timeouts, deadlocks and the like are not: they are errors of a
    command, for the writer to pin on it (a full disk is neither: see
    `_short_of_resources`). The repositories run
    statements on the driver's cursor, so driver exceptions arrive here too,
    sometimes wrapped by the writer."""
    for cause in _causes(exc):
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, psycopg.Error):
            state = cause.sqlstate or ""
            if state.startswith("08") or state in _DISCONNECT_STATES:
                return True
    return False


def _short_of_resources(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, is PostgreSQL's class 53 (insufficient resources: a full
    disk, out of memory, too many connections): the server's state, not the command's."""
    return any(isinstance(c, psycopg.Error) and (c.sqlstate or "").startswith("53") for c in _causes(exc))


def _server_short() -> Unavailable:
    return Unavailable(
        "DATABASE_UNAVAILABLE",
        "the database server is short of resources (disk, memory or connections); retry with the same request_id",
    )


def _connect_error(exc: BaseException) -> bool:
    """Whether opening a connection failed because the server could not be reached."""
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, psycopg.OperationalError))


def _unavailable() -> Unavailable:
    return Unavailable("DATABASE_UNAVAILABLE", "the node lost its database connection; retry")


def _closed() -> Unavailable:
    return Unavailable("SHUTTING_DOWN", "the node is shutting down; retry")


def open_database(
    url: str, *, sqlite_synchronous: str = "FULL", unavailable_after: float = UNAVAILABLE_AFTER_S
) -> Database:
    if is_sqlite(url):
        return SqliteDatabase(url, synchronous=sqlite_synchronous)
    return PostgresDatabase(url, unavailable_after=unavailable_after)

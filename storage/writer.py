"""The node's single writer: every mutation goes through it (DESIGN §9).

Requests queue commands; the writer takes all that are waiting (up to a
batch size), runs them one after another in one transaction, commits once
(group commit), then answers them all. State transitions are therefore
serial without any row locks. A refused command has written nothing (the use
cases check before they write), so it costs its neighbours nothing; a command
that fails after writing rolls the batch back, and the writer re-runs each of
its commands alone so that only the culprit fails.

Items a command publishes (events for the watch streams) reach the
after-commit listener only if the transaction committed. An observer (the
node's metrics, transfer/server/metrics.py) hears of every transaction: its
size and duration, or why it failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from storage.database import UNAVAILABLE_REASONS, Database
from storage.repositories import LogState, SqlUnitOfWork
from transfer.domain.errors import DomainError, Unavailable
from transfer.domain.logbook import LogGate, LogInconsistent
from transfer.domain.ports import ReadAhead, UnitOfWork
from transfer.unavailable import UnavailableLog

T = TypeVar("T")
log = logging.getLogger(__name__)

# The reasons WriterObserver.failed is told: the database's, the log gate's, a command's rollback, anything else.
FAILURE_REASONS = (*UNAVAILABLE_REASONS, "LOG_INCONSISTENT", "ROLLED_BACK", "UNEXPECTED")

Command = Callable[[UnitOfWork], Any]
IdempotencyKey = tuple[str, str]  # (principal, request_id)
Item = tuple[Command, "asyncio.Future[Any]", IdempotencyKey | None, ReadAhead | None]


class WriterObserver(Protocol):
    """Hears of each write transaction (called on the event loop; must be quick and must not raise)."""

    def committed(self, commands: int, seconds: float) -> None:
        """A batch of `commands` committed; `seconds` from the start of its transaction to its commit."""

    def failed(self, reason: str, commands: int) -> None:
        """A transaction of `commands` was rolled back or failed: `reason` is the refusal's reason
        (DATABASE_UNAVAILABLE, DATABASE_BUSY, ...), ROLLED_BACK (a command failed after writing: the
        batch is re-run one command at a time), LOG_INCONSISTENT, or UNEXPECTED."""


class WriterStopped(RuntimeError):
    """The writer is shutting down and takes no new commands."""


class Writer:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 128,
        after_commit: Callable[[list[object]], None] | None = None,
        after_uncertain: Callable[[], None] | None = None,
        gate: LogGate | None = None,
        observer: WriterObserver | None = None,
    ) -> None:
        self.db = db
        self.observer = observer
        # Closed when the log is found inconsistent with a signed checkpoint: no command runs then.
        self.gate = gate or LogGate()
        self.max_batch = max_batch
        self.after_commit = after_commit
        # Called when a transaction failed in a way that leaves open whether it
        # committed (the link broke during COMMIT): listeners should re-read.
        self.after_uncertain = after_uncertain
        self._queue: collections.deque[Item] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.log_state = LogState()
        self.batches = 0
        self.commands = 0
        self._unavailable = UnavailableLog(log, "write transaction failed: database unavailable")

    @property
    def waiting(self) -> int:
        """Commands queued and not yet taken into a batch."""
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="writer")

    async def stop(self) -> None:
        """Finish every queued command, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(
        self,
        command: Callable[[UnitOfWork], T],
        idempotency_key: IdempotencyKey | None = None,
        reads: ReadAhead | None = None,
    ) -> T:
        """Run `command` in the next batch; its result once committed.

        `idempotency_key` names the request id the command will look up and
        `reads` the rows it will read: the writer reads those of a whole batch
        in a few statements beforehand."""
        if self._stopping or self._task is None or self._task.done():
            raise WriterStopped("the writer is not running")
        self.gate.check()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # The command runs in its caller's context (in the writer's thread, batched with others'), so
        # what the caller's context holds (the call's trace id) is there for its log lines and its rows.
        context = contextvars.copy_context()

        def in_context(uow: UnitOfWork) -> T:
            return context.run(command, uow)

        self._queue.append((in_context, fut, idempotency_key, reads))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:  # whatever ended the loop, nobody may wait forever
            for _, fut, _, _ in self._queue:
                if not fut.done():
                    fut.set_exception(WriterStopped("the writer stopped"))
            self._queue.clear()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                await self._commit(batch)
            if self._stopping and not self._queue:
                return

    async def _commit(self, batch: list[Item]) -> None:
        began = time.perf_counter()
        try:
            outcomes, published, committed = await self.db.write(
                functools.partial(self._execute, batch=batch, log_state=self.log_state),
                busy=len(batch) > 1 or bool(self._queue),
            )
        except _Broken as broken:
            self._observe_failure("LOG_INCONSISTENT", len(batch))
            # The log lost entries it signed or acknowledged: nothing of the batch stands, and no
            # later command runs (the gate refuses them), so no entry gets a position it cannot prove.
            self.gate.trip(broken.cause)
            refusal = self.gate.refusal()
            for _, fut, _, _ in [*batch, *self._queue]:
                if not fut.done():
                    fut.set_exception(refusal)
            self._queue.clear()
            return
        except _Undo as undo:
            self._observe_failure("ROLLED_BACK", len(batch))
            if len(batch) > 1:
                # Someone in the batch failed half-way: run each alone, so only it fails.
                for item in batch:
                    if self.gate.broken is not None:  # one of them found the log broken: none runs after it
                        if not item[1].done():
                            item[1].set_exception(self.gate.refusal())
                        continue
                    await self._commit([item])
                return
            _, fut, _, _ = batch[0]
            if not fut.done():
                fut.set_exception(undo.error)
            return
        except Exception as exc:  # the transaction itself failed
            self._log_failure(exc, len(batch))
            self._observe_failure(exc.reason if isinstance(exc, DomainError) else "UNEXPECTED", len(batch))
            for _, fut, _, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if self.after_uncertain is not None:
                try:
                    self.after_uncertain()
                except Exception:
                    log.exception("after-uncertain listener failed")
            return
        for action in committed:
            action()
        self.batches += 1
        self.commands += len(batch)
        if self.observer is not None:
            self.observer.committed(len(batch), time.perf_counter() - began)
        for (_, fut, _, _), (ok, value) in zip(batch, outcomes, strict=True):
            if fut.done():  # the caller went away; the change stands
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        if published and self.after_commit is not None:
            try:
                self.after_commit(published)
            except Exception:
                log.exception("after-commit listener failed")

    def _observe_failure(self, reason: str, size: int) -> None:
        if self.observer is not None:
            self.observer.failed(reason, size)

    def _log_failure(self, exc: Exception, size: int) -> None:
        """A failed transaction: with its traceback when it is unexpected; the database being
        unavailable (down, full, locked) in one line at most every UNAVAILABLE_LOG_SECONDS."""
        if isinstance(exc, Unavailable):
            self._unavailable.failed(exc, batch=size)
        else:
            log.exception("write transaction failed", extra={"batch": size})

    @staticmethod
    def _execute(
        conn: Connection, batch: list[Item], log_state: LogState
    ) -> tuple[list[tuple[bool, Any]], list[object], list[Callable[[], None]]]:
        """Run the batch in the open transaction; raise `_Undo` to roll it all back.

        Use cases raise refusals before writing anything, so a refusal needs no
        rollback and costs its neighbours nothing. A command that fails after
        writing (or with an unexpected error) undoes the whole transaction; the
        writer then runs each command of the batch on its own.
        """
        uow = SqlUnitOfWork(conn, log_state)
        try:
            uow.idempotency.prefetch([key for _, _, key, _ in batch if key is not None])
            uow.read_ahead([reads for _, _, _, reads in batch if reads is not None])
        except Exception as exc:
            raise _Undo(exc) from exc
        outcomes: list[tuple[bool, Any]] = []
        for command, _, _, _ in batch:
            writes, mark = uow.writes, len(uow.published)
            try:
                outcomes.append((True, command(uow)))
            except LogInconsistent as exc:
                raise _Broken(exc) from exc
            except DomainError as exc:
                if uow.writes != writes:
                    raise _Undo(exc) from exc
                del uow.published[mark:]
                outcomes.append((False, exc))
            except Exception as exc:
                raise _Undo(exc) from exc
        try:
            committed = uow.flush()
        except Exception as exc:  # e.g. a constraint two commands of the batch break together
            raise _Undo(exc) from exc
        return outcomes, uow.published, committed


class _Broken(Exception):
    """Roll back the whole batch: the log is inconsistent with what the node signed (`cause`)."""

    def __init__(self, cause: LogInconsistent) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Undo(Exception):
    """Roll back the whole batch transaction because of `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error

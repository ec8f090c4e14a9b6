"""The node's single writer: every mutation goes through it (DESIGN §9).

Requests queue commands; the writer takes all that are waiting (up to a
batch size), runs each inside its own savepoint in one transaction, commits
once (group commit), then answers them all. A command that raises rolls back
to its savepoint only, so one refusal never undoes its neighbours, and state
transitions are serial without any row locks.

Items a command publishes (events for the watch streams) reach the
after-commit listener only if the transaction committed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

from storage.database import Database
from storage.repositories import SqlUnitOfWork
from transfer.domain.ports import UnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)

Command = Callable[[UnitOfWork], Any]


class WriterStopped(RuntimeError):
    """The writer is shutting down and takes no new commands."""


class Writer:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 128,
        after_commit: Callable[[list[object]], None] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.after_commit = after_commit
        self._queue: collections.deque[tuple[Command, asyncio.Future[Any]]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0
        self.commands = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="writer")

    async def stop(self) -> None:
        """Finish every queued command, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(self, command: Callable[[UnitOfWork], T]) -> T:
        """Run `command` in the next batch; its result once committed."""
        if self._stopping or self._task is None or self._task.done():
            raise WriterStopped("the writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((command, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:  # whatever ended the loop, nobody may wait forever
            for _, fut in self._queue:
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

    async def _commit(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            outcomes, published = await self.db.write(lambda conn: self._execute(conn, batch))
        except Exception as exc:  # the commit itself failed: nothing was written
            log.exception("write transaction failed", extra={"batch": len(batch)})
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.commands += len(batch)
        for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
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

    @staticmethod
    def _execute(
        conn: Connection, batch: list[tuple[Command, asyncio.Future[Any]]]
    ) -> tuple[list[tuple[bool, Any]], list[object]]:
        uow = SqlUnitOfWork(conn)
        outcomes: list[tuple[bool, Any]] = []
        for command, _ in batch:
            mark = len(uow.published)
            savepoint = conn.begin_nested()
            try:
                result = command(uow)
            except Exception as exc:
                savepoint.rollback()
                del uow.published[mark:]
                outcomes.append((False, exc))
            else:
                savepoint.commit()
                outcomes.append((True, result))
        return outcomes, uow.published

"""The storage facade the server uses: reads on a snapshot, writes through
the single writer. Callers see only the domain's `UnitOfWork`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from storage.database import Database
from storage.repositories import SqlUnitOfWork
from storage.writer import Writer
from transfer.domain.ports import ReadAhead, UnitOfWork

T = TypeVar("T")


class Store:
    def __init__(self, db: Database, writer: Writer) -> None:
        self.db = db
        self.writer = writer

    async def read(self, fn: Callable[[UnitOfWork], T]) -> T:
        return await self.db.read(lambda conn: fn(SqlUnitOfWork(conn)))

    async def write(
        self,
        fn: Callable[[UnitOfWork], T],
        idempotency_key: tuple[str, str] | None = None,
        reads: ReadAhead | None = None,
    ) -> T:
        """Run `fn` in the writer's next group commit; its result once durable.

        `idempotency_key` (principal, request_id): the request id `fn` looks up;
        `reads`: rows it will read. Both are read together with the rest of
        the batch's."""
        return await self.writer.submit(fn, idempotency_key, reads)

"""The storage facade the server uses: reads on a snapshot, writes through
the single writer. Callers see only the domain's `UnitOfWork`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from storage.database import Database
from storage.repositories import SqlUnitOfWork
from storage.sql import Runner
from storage.writer import Writer
from transfer.domain.paging import SECRET_BYTES
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

    async def node_secret(self, name: str) -> bytes:
        """The node's secret `name`, made (random, SECRET_BYTES) and stored the first time it is asked for.

        Made under the database's write lock, so processes starting together on
        one database agree on it."""

        def stored(conn: Connection) -> bytes | None:
            row = Runner(conn).one("secret_get", {"name": name})
            return None if row is None else bytes(row[0])

        def made(conn: Connection) -> bytes:
            runner = Runner(conn)
            row = runner.one("secret_get", {"name": name})
            if row is not None:  # another process made it meanwhile
                return bytes(row[0])
            value = secrets.token_bytes(SECRET_BYTES)
            runner.run("secret_insert", {"name": name, "value": value})
            runner.sync()
            return value

        found: bytes | None = await self.db.read(stored)
        return found if found is not None else await self.db.write(made)

"""Streaming reads of the whole log, for the `verify` command.

Chunked keyset queries (by index) keep memory flat and work the same on
SQLite and PostgreSQL, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url

from storage.database import (
    CONNECT_TIMEOUT_S,
    DatabaseUnreachable,
    connect,
    describe,
    is_sqlite,
    sqlite_engine,
    sync_url,
)
from storage.repositories import from_us
from storage.schema import log_checkpoints, log_leaves, log_nodes, nodes_filter
from transfer.domain.model import StoredCheckpoint
from transfer.ledger.merkle import NodeId


class LogScanner:
    def __init__(self, url: str, *, chunk: int = 20_000) -> None:
        """Raises DatabaseUnreachable if the database cannot be reached (a SQLite file that is not there is not made)."""
        self.chunk = chunk
        if is_sqlite(url):
            path = make_url(url).database
            if path and path != ":memory:" and not Path(path).is_file():
                raise DatabaseUnreachable(f"cannot connect to {describe(url)}: no such database file")
            self.engine: Engine = sqlite_engine(url, writer=False, readonly=True)
        else:
            self.engine = create_engine(sync_url(url), connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        try:
            connect(self.engine, url).close()
        except DatabaseUnreachable:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def _scan(self, query: Any, key: Any) -> Iterator[tuple[int, bytes]]:
        last = -1
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(query.where(key > last).order_by(key).limit(self.chunk)).all()
                for idx, value in rows:
                    yield int(idx), bytes(value)
                if len(rows) < self.chunk:
                    return
                last = int(rows[-1][0])

    def leaves(self) -> Iterator[tuple[int, bytes]]:
        """(index, data) of every leaf, in index order."""
        return self._scan(select(log_leaves.c.idx, log_leaves.c.data), log_leaves.c.idx)

    def level(self, level: int) -> Iterator[tuple[int, bytes]]:
        """(index, hash) of every stored node of one level, in index order."""
        q = select(log_nodes.c.idx, log_nodes.c.hash).where(log_nodes.c.level == level)
        return self._scan(q, log_nodes.c.idx)

    def leaf_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(log_leaves)).scalar_one())

    def nodes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        if not ids:
            return {}
        q = select(log_nodes.c.level, log_nodes.c.idx, log_nodes.c.hash).where(nodes_filter(ids))
        with self.engine.connect() as conn:
            return {(int(lv), int(i)): bytes(h) for lv, i, h in conn.execute(q)}

    def checkpoints(self) -> list[StoredCheckpoint]:
        c = log_checkpoints
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.c.size, c.c.root, c.c.note, c.c.created_at_us).order_by(c.c.size)).all()
        return [StoredCheckpoint(int(s), bytes(r), n, from_us(t)) for s, r, n, t in rows]

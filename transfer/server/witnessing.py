"""The node's side of witnessing: asking the configured witnesses (`log.witnesses`) to cosign its
checkpoints, over C2SP tlog-witness (`POST <url>/add-checkpoint`), and storing what they answer.

One task per witness, apart from the write path: a mutation never waits for a
witness. After each publication (`published`) every witness's task submits the
*latest* checkpoint (skipping any it missed meanwhile), with `old` the size that
witness last cosigned as far as the node knows (0 at first, learnt from a 409
`text/x.tlog.size` answer) and the consistency proof from it, computed from the
node's stored hashes. A 200's cosignature line is checked with the witness's key
(`Logbook.check_cosignature`, on a read) before it is stored. Errors and timeouts are retried
with a capped exponential backoff, logged once per kind of failure (and once when
the witness answers again), not once per attempt.

At start-up (`check_at_start`) the node submits its latest stored checkpoint
(or a signed size-0 checkpoint when it has none) with `old 0` to every witness:
the 409 answer carries the size the witness last cosigned for this origin. A
size beyond the database's log means the database lost entries that were signed
and witnessed (a restored backup): the node refuses to start. Witnesses that do
not answer within `log.witness_startup_seconds` are named in a warning and the
node starts (docs/operations.md, Witnesses).

HTTP is the standard library's `http.client`, on a worker thread, with a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.client
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from storage.store import Store
from transfer.domain.errors import DomainError
from transfer.domain.logbook import Logbook
from transfer.domain.model import StoredCheckpoint
from transfer.domain.ports import UnitOfWork
from transfer.ledger.note import NoteError, Verifier
from transfer.ledger.witnessed import check_witnessed, cosignature_verifier

log = logging.getLogger("transfer.node.witnessing")

__all__ = [
    "FAILURE_KINDS",
    "Answer",
    "WitnessAhead",
    "Witnessing",
    "add_checkpoint_body",
    "post_add_checkpoint",
]

SIZE_TYPE = "text/x.tlog.size"
MAX_ANSWER = 64 * 1024  # a cosignature answer is a few lines; a 409 one number
# The kinds of failed submission counted per witness (metrics: hocba_witness_submission_failures_total), each
# from 0; besides them, "http <status>" for an answer with an unexpected status, counted from its first one.
FAILURE_KINDS = ("unreachable", "ahead", "error", "conflicts", "bad cosignature", "not stored")
# At start, the latest checkpoint a quorum cosigned is sought among this many of the largest cosigned ones.
RECALL_CHECKPOINTS = 64


@dataclass(frozen=True)
class Answer:
    """A witness's HTTP answer: status, content type (without parameters), body."""

    status: int
    content_type: str
    body: str


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body: `old <size>`, one base64 proof hash per line, a blank line, the note."""
    lines = [f"old {old}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def post_add_checkpoint(url: str, body: bytes, timeout: float) -> Answer:
    """POST `body` to `<url>/add-checkpoint` (blocking: run it on a thread); OSError when unreachable."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(
            "POST", f"{parts.path}/add-checkpoint", body=body, headers={"Content-Type": "text/plain; charset=utf-8"}
        )
        resp = conn.getresponse()
        data = resp.read(MAX_ANSWER + 1)
        if len(data) > MAX_ANSWER:
            raise OSError(f"the answer is longer than {MAX_ANSWER} bytes")
        content_type = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
        return Answer(resp.status, content_type, data.decode("utf-8", "replace"))
    except http.client.HTTPException as exc:  # a malformed answer: as good as none
        raise OSError(f"bad HTTP answer: {exc!r}") from None
    finally:
        conn.close()


def _size_of(answer: Answer) -> int | None:
    """The size in a 409 `text/x.tlog.size` answer, None when it is not one."""
    if answer.status != 409 or answer.content_type != SIZE_TYPE:
        return None
    text = answer.body.strip()
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0") or len(text) > 20:
        return None
    return int(text)


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]


class WitnessAhead(Exception):
    """A witness has cosigned a larger tree of this log than the database holds."""

    def __init__(self, name: str, size: int, log_size: int) -> None:
        super().__init__(f"witness {name} has cosigned a checkpoint of {size} entries; the database holds {log_size}")
        self.name = name
        self.size = size
        self.log_size = log_size


@dataclass
class _Link:
    """What the node knows of one witness."""

    name: str
    url: str
    verifier: Verifier
    old: int = 0  # the size it last cosigned, as far as we know
    cosigned: int = -1  # the largest size whose cosignature by it we hold
    failing: str = ""  # the kind of the last failure, "" when the last attempt succeeded
    attempts: int = 0  # requests sent
    # failed submissions, by kind (for metrics; every one of FAILURE_KINDS from 0)
    failures: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(FAILURE_KINDS, 0)))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: list[tuple[int, str]] = field(default_factory=list)  # answers got before the writer ran


class Witnessing:
    """The witness submitter of one node (see the module docstring)."""

    # Bounds, class attributes so a test or a benchmark can shorten them.
    timeout_seconds = 5.0
    first_backoff_seconds = 0.2
    max_backoff_seconds = 30.0
    conflicts_per_round = 3  # 409s in a row before backing off

    def __init__(
        self,
        witnesses: Sequence[tuple[str, str, str]],
        quorum: int,
        logbook: Logbook,
        store: Store,
    ) -> None:
        """`witnesses`: (name, vkey, url) each."""
        self.links = [_Link(name, url, cosignature_verifier(vkey)) for name, vkey, url in witnesses]
        self.quorum = quorum
        self.logbook = logbook
        self.store = store
        self._latest: StoredCheckpoint | None = None
        self._published_at: dict[int, float] = {}  # size -> monotonic time of publication
        self._cosigners: dict[int, set[str]] = {}
        self._signed_at: dict[int, datetime] = {}  # size -> when the node signed it (for `latest_witnessed`)
        # The latest checkpoint cosigned by a quorum since the start: (size, when the node signed it).
        self.latest_witnessed: tuple[int, datetime] | None = None
        # (size, seconds from publication to the quorum-th cosignature), the latest ones
        self.witnessed: deque[tuple[int, float]] = deque(maxlen=10_000)
        self._tasks: list[asyncio.Task[None]] = []

    # -- start-up -----------------------------------------------------------

    async def check_at_start(self, probe: StoredCheckpoint, stored: bool, log_size: int, wait: float) -> None:
        """Ask every witness, with `old 0`, for the size it cosigned (see the module docstring).

        `probe`: the checkpoint submitted (`stored`: it is in the database, so a
        200's cosignature is kept). WitnessAhead when one has cosigned more than
        `log_size` entries; unanswered witnesses are named in one warning."""
        if stored:
            self._signed_at[probe.size] = probe.created_at
        tasks = {asyncio.create_task(self._probe(link, probe, stored, wait)): link for link in self.links}
        done, late = await asyncio.wait(tasks, timeout=wait)
        for task in late:
            task.cancel()
        ahead = [(tasks[t].name, size) for t in done if t.exception() is None and (size := t.result()) is not None]
        ahead = [(name, size) for name, size in ahead if size > log_size]
        if ahead:
            name, size = max(ahead, key=lambda a: a[1])
            raise WitnessAhead(name, size, log_size)
        unknown = sorted(tasks[t].name for t in late) + sorted(
            tasks[t].name for t in done if t.exception() is not None or t.result() is None
        )
        if unknown:
            log.warning(
                "witnesses did not say what they cosigned: started without checking the database against them",
                extra={"witnesses": ",".join(unknown), "waited_s": wait},
            )

    async def _probe(self, link: _Link, probe: StoredCheckpoint, stored: bool, wait: float) -> int | None:
        body = add_checkpoint_body(0, [], probe.note)
        link.attempts += 1
        try:
            answer = await asyncio.to_thread(post_add_checkpoint, link.url, body, min(wait, self.timeout_seconds))
        except OSError as exc:
            self._failed(link, "unreachable", f"{exc!r}")
            return None
        if answer.status == 200:
            link.old = probe.size
            if stored:
                link.pending.append((probe.size, answer.body))
            return probe.size
        size = _size_of(answer)
        if size is not None:
            link.old = size
            return size
        self._failed(link, f"http {answer.status}", _first_line(answer.body))
        return None

    def recall(self, uow: UnitOfWork, log_keys: Sequence[Verifier]) -> tuple[int, datetime] | None:
        """At start (a read): the latest stored checkpoint whose stored cosignatures make a quorum of the
        configured witnesses (`check_witnessed`, the one rule), sought among the RECALL_CHECKPOINTS largest
        cosigned ones, as (size, when the node signed it); None when none does. The caller makes it
        `latest_witnessed`, so a restart during a witness outage does not forget it (metrics export it)."""
        witnesses = [link.verifier for link in self.links]
        for size in uow.log.cosigned_sizes(RECALL_CHECKPOINTS):
            stored = uow.log.checkpoint(size)
            if stored is None:
                continue
            note = stored.note + "".join(uow.log.cosignatures(size))
            try:
                found = check_witnessed(note, log_keys, witnesses, max(self.quorum, 1), origin=self.logbook.origin)
            except NoteError:  # signed by a log key no longer configured: not this log's any more
                continue
            if found.witnessed:
                return size, stored.created_at
        return None

    # -- running ------------------------------------------------------------

    def start(self, latest: StoredCheckpoint | None) -> None:
        """Start one task per witness, submitting `latest` (the latest stored checkpoint) first."""
        if latest is not None and (self._latest is None or latest.size > self._latest.size):
            self._latest = latest  # unless a publication since told of a newer one
            self._signed_at[latest.size] = latest.created_at
        for link in self.links:
            link.wake.set()
            self._tasks.append(asyncio.create_task(self._run(link), name=f"witness {link.name}"))

    def published(self, checkpoint: StoredCheckpoint) -> None:
        """A checkpoint was stored: every witness is asked to cosign it (or a later one)."""
        if self._latest is not None and checkpoint.size <= self._latest.size:
            return
        self._latest = checkpoint
        self._published_at[checkpoint.size] = time.monotonic()
        self._signed_at[checkpoint.size] = checkpoint.created_at
        while len(self._published_at) > 1024:  # witnesses down for long: keep the latest only
            del self._published_at[next(iter(self._published_at))]
        while len(self._signed_at) > 1024:
            del self._signed_at[next(iter(self._signed_at))]
        for link in self.links:
            link.wake.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, link: _Link) -> None:
        backoff = self.first_backoff_seconds
        for size, answer in link.pending:
            await self._store(link, size, answer)
        link.pending.clear()
        while True:
            await link.wake.wait()
            link.wake.clear()
            latest = self._latest
            if latest is None or link.cosigned >= latest.size:
                continue
            try:
                ok = await self._submit(link, latest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or the database: logged like any failure, then retried
                self._failed(link, "error", f"{exc!r}")
                ok = False
            if ok:
                backoff = self.first_backoff_seconds
                continue
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.max_backoff_seconds)
            link.wake.set()

    async def _submit(self, link: _Link, checkpoint: StoredCheckpoint) -> bool:
        """Submit `checkpoint` until it is cosigned (True) or a failure (False, logged)."""
        size = checkpoint.size
        for _ in range(self.conflicts_per_round):
            old = link.old
            if old > size:
                self._failed(
                    link,
                    "ahead",
                    f"it has cosigned {old} entries, more than this node's latest checkpoint ({size}): this node's "
                    "database is behind what it signed (LOG_BEHIND_SIGNED_CHECKPOINT)",
                    level=logging.ERROR,
                )
                link.old = 0  # ask again: it may be another log's mistake, or ours repaired
                return False
            proof: list[bytes] = []
            if 0 < old < size:
                proof = await self.store.read(functools.partial(self.logbook.consistency_proof, first=old, second=size))
            body = add_checkpoint_body(old, proof, checkpoint.note)
            link.attempts += 1
            try:
                answer = await asyncio.to_thread(post_add_checkpoint, link.url, body, self.timeout_seconds)
            except OSError as exc:
                self._failed(link, "unreachable", f"{exc!r}")
                return False
            if answer.status == 200:
                return await self._store(link, size, answer.body)
            learnt = _size_of(answer)
            if learnt is not None:
                link.old = learnt
                continue
            # 400/403/404/422 (a refusal: our request, our key, our origin or our tree), 5xx: retried later
            # (a 422 is worth an operator's look: docs/operations.md, Witnesses).
            level = logging.ERROR if answer.status == 422 else logging.WARNING
            self._failed(link, f"http {answer.status}", _first_line(answer.body), level=level)
            return False
        self._failed(link, "conflicts", f"{self.conflicts_per_round} answers 409 in a row")
        return False

    async def _store(self, link: _Link, size: int, answer: str) -> bool:
        try:
            found = await self.store.read(lambda uow: self.logbook.check_cosignature(uow, size, link.verifier, answer))
            await self.store.write(lambda uow: self.logbook.add_cosignatures(uow, size, found))
        except NoteError as exc:
            self._failed(link, "bad cosignature", str(exc), level=logging.ERROR)
            return False
        except DomainError as exc:  # the database is unavailable, the node closed for changes
            self._failed(link, "not stored", f"{exc.reason}: {exc.message}")
            return False
        link.old = max(link.old, size)
        link.cosigned = max(link.cosigned, size)
        if link.failing:
            log.info("witness cosigns again", extra={"witness": link.name, "tree_size": size})
            link.failing = ""
        self._count(link.name, size)
        return True

    def _count(self, name: str, size: int) -> None:
        """Note `name`'s cosignature of `size`; the checkpoint is witnessed at the quorum-th."""
        cosigners = self._cosigners.setdefault(size, set())
        cosigners.add(name)
        signed_at = self._signed_at.get(size)
        if (
            len(cosigners) >= max(self.quorum, 1)
            and signed_at is not None
            and (self.latest_witnessed is None or size > self.latest_witnessed[0])
        ):
            self.latest_witnessed = (size, signed_at)
        if len(cosigners) == max(self.quorum, 1):
            published = self._published_at.get(size)
            after = None if published is None else time.monotonic() - published
            if after is not None:
                self.witnessed.append((size, after))
            log.info(
                "checkpoint witnessed",
                extra={
                    "tree_size": size,
                    "cosignatures": len(cosigners),
                    "after_ms": None if after is None else round(after * 1000, 1),
                },
            )
        for old in [s for s in self._cosigners if s < size]:  # only the latest matters
            self._cosigners.pop(old, None)
            self._published_at.pop(old, None)
        for old in [s for s in self._signed_at if s < size]:
            del self._signed_at[old]

    def _failed(self, link: _Link, kind: str, detail: str, *, level: int = logging.WARNING) -> None:
        """One line per kind of failure in a row, not one per attempt (each one counted)."""
        link.failures[kind] += 1
        if link.failing == kind:
            return
        link.failing = kind
        log.log(level, "witness failed: %s", kind, extra={"witness": link.name, "url": link.url, "detail": detail})

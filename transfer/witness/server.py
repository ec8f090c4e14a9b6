"""The witness's HTTP service (c2sp.org/tlog-witness `add-checkpoint`), on the standard library.

`Witness.add_checkpoint` is the whole protocol: parse, check the origin and the log's
signature, then in one write transaction read the stored checkpoint, check consistency,
and store the new checkpoint with its cosignature (or the evidence of a split view); the
cosignature is returned only after that commit. `Witness.latest` serves the monitoring
endpoint (`GET <prefix>/<origin hash>/checkpoint`). `make_server` wraps both in a
`ThreadingHTTPServer`; each request has its own connection to the state file, and
SQLite's write lock orders racing requests. `load_signer` reads the witness's key, and
`BackgroundWitness` runs the server on a thread of a host program: a node that witnesses
its peers (transfer/server/peer_witness.py) uses exactly this witness, not a copy of it.
`Witness.answered` counts the add-checkpoint answers by log and OUTCOMES (the node's metrics).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from storage.witness import StateUnavailable, WitnessState
from transfer.ledger.note import (
    CosignatureV1Signer,
    NoteError,
    Verifier,
    cosignature_signer,
    parse_checkpoint,
    parse_note,
    signature_line,
)
from transfer.ledger.witness import (
    KIND_BAD_PROOF,
    KIND_SAME_SIZE,
    Refusal,
    check_consistency,
    open_submitted,
    parse_add_checkpoint,
)

__all__ = [
    "MAX_BODY",
    "OUTCOMES",
    "BackgroundWitness",
    "KeyFileError",
    "Response",
    "Witness",
    "load_signer",
    "make_server",
]

log = logging.getLogger("transfer.witness")

# An add-checkpoint body is an old line, at most 63 proof lines and a checkpoint note of at most
# 100 signatures (note.MAX_SIGNATURES): well under this.
MAX_BODY = 64 * 1024

TEXT = "text/plain; charset=utf-8"
# How an add-checkpoint request was answered (c2sp.org/tlog-witness): 200 cosigned, 400 (and 411, 413)
# malformed, 403 bad_signature, 404 unknown_origin, 409 conflict (the log's old size is not the witness's),
# 422 split_view (another root at the cosigned size: evidence kept, a fork by itself), proof_fails (a larger
# checkpoint whose consistency proof fails: evidence kept, a fork only once the log cannot prove consistency,
# since anyone holding two of its checkpoints can send a garbled proof) or inconsistent (any other 422),
# 503 unavailable (the state file).
OUTCOMES = (
    "cosigned", "malformed", "bad_signature", "unknown_origin", "conflict", "inconsistent", "split_view", "proof_fails",
    "unavailable",
)  # fmt: skip
_BY_EVIDENCE = {KIND_SAME_SIZE: "split_view", KIND_BAD_PROOF: "proof_fails"}
_BY_STATUS = {400: "malformed", 403: "bad_signature", 404: "unknown_origin", 409: "conflict", 422: "inconsistent"}
SIZE = "text/x.tlog.size"


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, content type, body."""

    status: int
    content_type: str
    body: bytes


class Witness:
    """The add-checkpoint rules over a state file, for the configured logs (origin -> verifier keys)."""

    def __init__(
        self,
        signer: CosignatureV1Signer,
        state: WitnessState,
        logs: dict[str, list[Verifier]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.state = state
        self.logs = logs
        self._clock = clock
        self._by_hash = {hashlib.sha256(origin.encode()).hexdigest(): origin for origin in logs}
        # Answers by (origin, outcome); origin None when the request names no log this witness witnesses.
        self.answered: Counter[tuple[str | None, str]] = Counter()
        self._answered_lock = threading.Lock()

    def count(self, origin: str | None, outcome: str) -> None:
        """One more answer of `outcome` (OUTCOMES) about the log `origin` (None: none witnessed here)."""
        with self._answered_lock:
            self.answered[(origin if origin in self.logs else None, outcome)] += 1

    def answers(self) -> list[tuple[tuple[str | None, str], int]]:
        """A copy of `answered`, taken under its lock (for another thread)."""
        with self._answered_lock:
            return list(self.answered.items())

    def add_checkpoint(self, body: bytes) -> Response:
        about: list[str] = []  # the submitted checkpoint's origin, once read
        try:
            response = self._add(body, about)
        except Refusal as refusal:
            log.info("add-checkpoint refused: %d %s", refusal.status, refusal.reason)
            outcome = (
                _BY_EVIDENCE[refusal.evidence.kind]
                if refusal.evidence is not None
                else _BY_STATUS.get(refusal.status, "malformed")
            )
            self.count(about[0] if about else None, outcome)
            if refusal.status == HTTPStatus.CONFLICT:
                return Response(refusal.status, SIZE, f"{refusal.stored_size}\n".encode())
            return Response(refusal.status, TEXT, f"{refusal.reason}\n".encode())
        except StateUnavailable as exc:
            # Nothing was cosigned: the log may retry.
            log.error("state file unavailable: %s", exc)
            self.count(about[0] if about else None, "unavailable")
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, TEXT, b"the witness's state is unavailable\n")
        self.count(about[0], "cosigned")
        return response

    def latest(self, origin_hash: str) -> Response:
        """`GET <prefix>/<hex SHA-256 of the origin>/checkpoint`: the last checkpoint cosigned for that log, with
        the log's signatures as submitted and the witness's cosignature (404 if none)."""
        origin = self._by_hash.get(origin_hash)
        try:
            found = None if origin is None else self.state.cosigned(origin)
        except StateUnavailable as exc:
            log.error("state file unavailable: %s", exc)
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, TEXT, b"the witness's state is unavailable\n")
        if found is None:
            return Response(HTTPStatus.NOT_FOUND, TEXT, b"no checkpoint cosigned for this origin\n")
        stored, cosignature = found
        return Response(HTTPStatus.OK, TEXT, (stored.note + cosignature).encode())

    def _add(self, body: bytes, about: list[str]) -> Response:
        request = parse_add_checkpoint(body)
        try:
            checkpoint = open_submitted(request.note, self.logs)
        except Refusal as refusal:
            if refusal.status == HTTPStatus.FORBIDDEN:  # a witnessed log's origin, not signed by its key
                about.append(parse_checkpoint(parse_note(request.note).text).origin)
            raise
        about.append(checkpoint.origin)
        # A cosignature must carry a time (tlog-witness: "the timestamp MUST NOT be zero").
        timestamp = max(1, int(self._clock()))
        text = checkpoint.text()
        line = signature_line(self.signer.cosign(text, timestamp))
        contradiction: Refusal | None = None
        with self.state.transaction() as tx:
            try:
                check_consistency(tx.get(checkpoint.origin), request, checkpoint)
            except Refusal as refusal:
                if refusal.evidence is None:
                    raise
                # Keep the two signed checkpoints (committed with this transaction), then refuse.
                tx.keep_evidence(refusal.evidence, timestamp)
                contradiction = refusal
            else:
                tx.put(checkpoint.origin, checkpoint.size, checkpoint.root, request.note, line, timestamp)
        if contradiction is not None:
            log.error("split view kept as evidence for %s: %s", checkpoint.origin, contradiction.reason)
            raise contradiction
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return Response(HTTPStatus.OK, TEXT, line.encode())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec recommends
    timeout = 30  # seconds a socket read may wait: a client that stalls mid-request loses its connection

    def do_POST(self) -> None:
        if self.path != self.server.add_path:
            self._send(Response(HTTPStatus.NOT_FOUND, TEXT, b"not found\n"))
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.server.witness.count(None, "malformed")
            self._send(Response(HTTPStatus.LENGTH_REQUIRED, TEXT, b"Content-Length required\n"))
            return
        if int(length) > MAX_BODY:
            self.server.witness.count(None, "malformed")
            self.close_connection = True
            self._send(Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, TEXT, b"body too large\n"))
            return
        self._send(self.server.witness.add_checkpoint(self.rfile.read(int(length))))

    def do_GET(self) -> None:
        prefix = self.server.prefix
        tail = self.path[len(prefix) :].split("/") if self.path.startswith(prefix + "/") else []
        if len(tail) == 3 and tail[0] == "" and tail[2] == "checkpoint":
            self._send(self.server.witness.latest(tail[1]))
        elif self.path == self.server.add_path:
            self._send(Response(HTTPStatus.METHOD_NOT_ALLOWED, TEXT, b"POST only\n"))
        else:
            self._send(Response(HTTPStatus.NOT_FOUND, TEXT, b"not found\n"))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "POST")
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness, prefix: str) -> None:
        super().__init__(address, _Handler)
        self.witness = witness
        self.prefix = prefix
        self.add_path = f"{prefix}/add-checkpoint"


def make_server(host: str, port: int, witness: Witness, prefix: str = "") -> ThreadingHTTPServer:
    """An HTTP server answering `POST <prefix>/add-checkpoint` and `GET <prefix>/<origin hash>/checkpoint`;
    call serve_forever() on it."""
    return _Server((host, port), witness, prefix.rstrip("/"))


class KeyFileError(Exception):
    """The witness's key file cannot be used; the message says which file and why."""


def load_signer(path: Path) -> CosignatureV1Signer:
    """The witness's cosignature/v1 signer from its key file (a Go-format Ed25519 note key)."""
    try:
        return cosignature_signer(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        raise KeyFileError(f"{path}: not a witness key: {exc}") from None


class BackgroundWitness:
    """A witness's HTTP server on a thread of its own, for a program that runs it beside other work.

    The socket is bound on construction (an OSError if it cannot be), so a host can refuse to start
    before anything runs. `stop` ends the accept loop and closes the socket; a request already being
    answered finishes on its own thread or dies with the process, and either way its transaction
    committed whole or not at all (a cosignature is sent only after its commit)."""

    def __init__(self, host: str, port: int, witness: Witness, prefix: str = "") -> None:
        self.server = make_server(host, port, witness, prefix)
        self.witness = witness
        self.host, self.port = str(self.server.server_address[0]), int(self.server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="witness-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before `start`."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()

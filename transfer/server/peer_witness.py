"""The node as a witness for its peers: the standalone C2SP witness (transfer/witness/server.py), run on a
thread of the node when its configuration has a [witness] section (docs/witness.md, "Every node a witness
for its peers").

The logs it witnesses are the configured peers': each peer's origin (`peers[].log_origin`, by default the
name of the peer's log key, which C2SP tlog-checkpoint says is the origin) with the key in
`peers[].log_vkey_file`, the same key the node checks its peers' receipts with. Its state is its own SQLite
file (storage/witness.py), never the node's database: restoring the node's database does not touch what its
witness cosigned, and the other way round. `observed` gives the node's metrics what the witness answered (by
peer province) and, read from that file, what it cosigned and the split-view evidence it kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from storage.witness import LogSummary, StateUnavailable, WitnessState
from transfer.ledger.note import CosignatureV1Signer, Verifier
from transfer.server.config import PeerWitnessConfig
from transfer.server.peers import Peer
from transfer.witness.server import BackgroundWitness, KeyFileError, Witness, load_signer

__all__ = ["UNKNOWN_PEER", "PeerWitness", "WitnessStartRefused", "Witnessed", "peer_logs", "peer_origins"]

log = logging.getLogger("transfer.node")

# The peer label of answers to requests about no configured peer's log (provinces are two-digit codes).
UNKNOWN_PEER = "unknown"


class WitnessStartRefused(Exception):
    """The node's witness cannot start: one line saying which setting and why."""


def peer_logs(peers: Mapping[str, Peer]) -> dict[str, list[Verifier]]:
    """The logs the node witnesses: each peer's origin -> its log key."""
    logs: dict[str, list[Verifier]] = {}
    for province, peer in sorted(peers.items()):
        origin = peer.config.log_origin or peer.log_key.name
        if origin in logs:
            raise WitnessStartRefused(
                f"peers {province} and another peer have the same log origin {origin!r}: set peers[].log_origin"
            )
        logs[origin] = [peer.log_key]
    return logs


def peer_origins(peers: Mapping[str, Peer]) -> dict[str, str]:
    """Each witnessed log's origin -> the peer's province (the metrics' label)."""
    return {peer.config.log_origin or peer.log_key.name: province for province, peer in peers.items()}


@dataclass(frozen=True)
class Witnessed:
    """What the node's witness answered since the node started, by (peer province, outcome); what its state
    file holds by peer province (None when the file could not be read)."""

    answered: dict[tuple[str, str], int]
    logs: dict[str, LogSummary] | None


@dataclass
class PeerWitness:
    """The [witness] of a node: its key and the peers' logs, loaded when the node is made; bound and
    served by `start`, stopped by `stop`."""

    config: PeerWitnessConfig
    signer: CosignatureV1Signer
    logs: dict[str, list[Verifier]]
    origins: dict[str, str]
    running: BackgroundWitness | None = None

    @classmethod
    def load(cls, config: PeerWitnessConfig, peers: Mapping[str, Peer], other_keys: Iterable[bytes]) -> PeerWitness:
        """Read the witness key; refuse one that is also the node's log or seal key (`other_keys`: their
        Ed25519 public keys), or that is not named `witness.name`."""
        try:
            signer = load_signer(config.key_file)
        except KeyFileError as exc:
            raise WitnessStartRefused(f"witness.key_file: {exc}") from None
        if signer.public_key in set(other_keys):
            raise WitnessStartRefused(
                f"witness.key_file: {config.key_file} holds the node's log or seal key; a witness needs a key of its "
                "own (transfer-witness generate-key)"
            )
        if config.name and signer.name != config.name:
            raise WitnessStartRefused(
                f"witness.name: {config.name!r}, but the key in {config.key_file} is named {signer.name!r}"
            )
        return cls(config, signer, peer_logs(peers), peer_origins(peers))

    @property
    def vkey(self) -> str:
        """The verifier key (type 0x04) that checks this witness's cosignatures."""
        return self.signer.vkey

    def start(self, clock: Callable[[], float]) -> int:
        """Open the state file, bind the port and serve on a thread; returns the bound port."""
        cfg = self.config
        try:
            cfg.state_file.parent.mkdir(parents=True, exist_ok=True)
            state = WitnessState(cfg.state_file)
        except (OSError, StateUnavailable) as exc:
            raise WitnessStartRefused(f"witness.state_file: cannot open {cfg.state_file}: {exc}") from None
        try:
            running = BackgroundWitness(cfg.host, cfg.port, Witness(self.signer, state, self.logs, clock))
        except OSError as exc:
            raise WitnessStartRefused(
                f"cannot listen on {cfg.host}:{cfg.port} (witness.listen): {exc.strerror or exc}"
            ) from None
        running.start()
        self.running = running
        log.info(
            "witness started",
            extra={"witness_port": running.port, "witness_vkey": self.vkey, "witnessed_logs": sorted(self.logs)},
        )
        return running.port

    def observed(self) -> Witnessed | None:
        """The answers counted and the state file's summary, by peer province (None before `start`). Reads the
        state file (its own connection: safe on any thread)."""
        running = self.running
        if running is None:
            return None
        witness = running.witness
        counted = witness.answers()
        answered: dict[tuple[str, str], int] = {}
        for (origin, outcome), count in counted:
            peer = self.origins.get(origin, UNKNOWN_PEER) if origin is not None else UNKNOWN_PEER
            answered[(peer, outcome)] = answered.get((peer, outcome), 0) + count
        try:
            summary = witness.state.summary()
        except StateUnavailable:
            return Witnessed(answered, None)
        return Witnessed(answered, {self.origins[o]: s for o, s in summary.items() if o in self.origins})

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None
            log.info("witness stopped")

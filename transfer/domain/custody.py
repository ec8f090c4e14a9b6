"""The federation's promises, checked from the nodes' logs alone (the rules of `transfer-audit`).

Pure: it takes each node's entries as bytes (already proved, by the caller, to
make the node's signed checkpoint) and reads them only through `decode_any`.
Neither grpc nor a database is involved, so the rules are tested on hand-built
lists of entries.

The rules (docs/audit.md says the same for auditors):

* **entries decode**: every entry is one valid entry of a known kind;
* **offers acknowledged**: every offer a sender logged (`transfer.offered`:
  transfer, peer, package digest) is either acknowledged (`message.acknowledged`
  of kind offer, naming the same package digest and the receiver's
  `transfer.requested` of the same transfer: same provinces, schools and
  record digest, actor `peer:<sender>`) or refused for good (a refusal entry
  naming the same package digest, and the receiver never logged the transfer);
* **decisions resolved**: every decision on the receiving node of a transfer
  from another province is acknowledged there (`message.acknowledged` of kind
  resolve) naming the sender's entry, which is the same decision (kind,
  schools, record and reason digests) by `peer:<receiver>`; every decision on
  the sending node of a transfer to another province is such a resolution, with
  the receiver's decision of the same kind in its log, or a refusal for good
  (`node:<receiver>`, with the sender's refusal entry); an acknowledged
  cancellation request names the receiver's `transfer.cancelled` or nothing;
  no node acknowledges an offer or a decision it never logged;
* **nothing dangles**: an offer, a decision or an incoming transfer still
  waiting for its counterpart, an acknowledgement naming an entry past the
  peer's checkpoint as read, and an undecided transfer past its deadline are in
  flight while younger than the horizon (measured back from the newest entry
  time of all the logs read), broken when older;
* **decided at most once**: on each node, a transfer has at most one
  `transfer.requested` and at most one decision.

Entries naming a province whose log was not given are counted as not checked,
never as failures. The text of refusals and the content of page entries are
never read.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from transfer.domain.leaves import NO_PEER_ENTRY, LeafError, LeafKind, LogLeaf, PeerLeaf, TransferLeaf, decode_any
from transfer.domain.model import MessageKind

# Ten times the longest pause of a node's delivery schedule (60 s between attempts, each with a 10 s
# deadline; docs/federation.md, Outbox and dispatcher): a message to a peer that answers is delivered
# well within it, so what still waits after it waits on a peer that does not answer, or on nothing.
DEFAULT_HORIZON = timedelta(minutes=10)

DECISION_KINDS = frozenset(
    {LeafKind.TRANSFER_ACCEPTED, LeafKind.TRANSFER_REJECTED, LeafKind.TRANSFER_CANCELLED, LeafKind.TRANSFER_EXPIRED}
)


class Rule(enum.Enum):
    DECODE = "entries decode"
    OFFERS = "offers acknowledged"
    DECISIONS = "decisions resolved"
    DANGLING = "nothing dangles"
    ONCE = "decided at most once"


def kind_name(kind: int) -> str:
    """`transfer.offered` for a known kind, `kind 9` for another."""
    try:
        name = LeafKind(kind).name.lower()
    except ValueError:
        return f"kind {kind}"
    return name.replace("_", ".", 1)


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken promise, named by the entry that shows it."""

    rule: Rule
    province: str
    index: int
    kind: str
    transfer_id: str
    problem: str

    def __str__(self) -> str:
        about = f" transfer {self.transfer_id}" if self.transfer_id else ""
        return f"[{self.rule.value}] node {self.province} entry {self.index} ({self.kind}){about}: {self.problem}"


@dataclass
class Tally:
    checked: int = 0
    passed: int = 0
    failed: int = 0
    in_flight: int = 0  # passed, but only because younger than the horizon
    not_checked: int = 0  # naming a province whose log was not given


Indexed = tuple[int, LogLeaf]


@dataclass
class NodeEntries:
    """One node's log as the rules need it: its transfer and peer entries, by transfer id and by index.

    Feed it every entry in order with `add`; page and staff entries are decoded (they must decode)
    and then dropped."""

    province: str
    size: int = 0
    by_transfer: dict[str, list[Indexed]] = field(default_factory=lambda: defaultdict(list))
    by_index: dict[int, LogLeaf] = field(default_factory=dict)
    undecodable: list[tuple[int, int, str]] = field(default_factory=list)  # index, kind byte, why
    newest: datetime | None = None

    def add(self, data: bytes) -> None:
        index = self.size
        self.size += 1
        try:
            leaf = decode_any(data)
        except LeafError as exc:
            self.undecodable.append((index, data[1] if len(data) > 1 else -1, str(exc)))
            return
        if self.newest is None or leaf.time > self.newest:
            self.newest = leaf.time
        if isinstance(leaf, TransferLeaf | PeerLeaf):
            self.by_transfer[leaf.transfer_id].append((index, leaf))
            self.by_index[index] = leaf


def read_entries(province: str, entries: Iterable[bytes]) -> NodeEntries:
    log = NodeEntries(province)
    for data in entries:
        log.add(data)
    return log


@dataclass
class Report:
    tallies: dict[Rule, Tally]
    findings: list[Finding]
    newest: datetime | None
    horizon: timedelta
    unchecked_provinces: set[str]

    @property
    def ok(self) -> bool:
        return not self.findings


def _is_refusal(leaf: LogLeaf) -> bool:
    """An offer refused for good: a peer entry that is neither an offer nor an acknowledgement (kind 8, and
    whatever kind records a refusal by its reason code)."""
    return isinstance(leaf, PeerLeaf) and leaf.kind not in (LeafKind.TRANSFER_OFFERED, LeafKind.MESSAGE_ACKNOWLEDGED)


def _acknowledgements(entries: list[Indexed], message_kind: MessageKind, peer: str) -> list[tuple[int, PeerLeaf]]:
    """The entries recording that `peer` acknowledged a message of `message_kind`, with their indexes."""
    return [
        (i, leaf)
        for i, leaf in entries
        if isinstance(leaf, PeerLeaf)
        and leaf.kind is LeafKind.MESSAGE_ACKNOWLEDGED
        and leaf.message_kind == message_kind
        and leaf.peer == peer
    ]


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


def _describe(leaf: LogLeaf | None) -> str:
    if leaf is None:
        return "not a transfer entry"
    about = f" of transfer {leaf.transfer_id}" if isinstance(leaf, TransferLeaf | PeerLeaf) else ""
    return f"a {kind_name(leaf.kind)}{about}"


class _Audit:
    def __init__(self, logs: Sequence[NodeEntries], horizon: timedelta) -> None:
        self.logs = {log.province: log for log in logs}
        self.horizon = horizon
        self.newest = max((log.newest for log in logs if log.newest is not None), default=None)
        self.tallies = {rule: Tally() for rule in Rule}
        self.findings: list[Finding] = []
        self.unchecked: set[str] = set()

    # -- outcomes ------------------------------------------------------------

    def passed(self, rule: Rule) -> None:
        tally = self.tallies[rule]
        tally.checked += 1
        tally.passed += 1

    def failed(self, rule: Rule, log: NodeEntries, index: int, leaf: LogLeaf, problem: str) -> None:
        tally = self.tallies[rule]
        tally.checked += 1
        tally.failed += 1
        transfer_id = leaf.transfer_id if isinstance(leaf, TransferLeaf | PeerLeaf) else ""
        self.findings.append(Finding(rule, log.province, index, kind_name(leaf.kind), transfer_id, problem))

    def outcome(self, rule: Rule, log: NodeEntries, index: int, leaf: LogLeaf, problems: list[str]) -> None:
        if problems:
            self.failed(rule, log, index, leaf, "; ".join(problems))
        else:
            self.passed(rule)

    def not_checked(self, rule: Rule, province: str) -> None:
        self.tallies[rule].not_checked += 1
        self.unchecked.add(province)

    def waiting(self, log: NodeEntries, index: int, leaf: LogLeaf, what: str, since: datetime | None = None) -> None:
        """Something still waits for its counterpart: in flight within the horizon, dangling past it."""
        since = since or leaf.time
        age = (self.newest - since) if self.newest is not None else timedelta(0)
        if age > self.horizon:
            self.failed(Rule.DANGLING, log, index, leaf, f"{what}, {_age(age)} before the newest entry")
        else:
            self.passed(Rule.DANGLING)
            self.tallies[Rule.DANGLING].in_flight += 1

    def peer_log(self, rule: Rule, province: str) -> NodeEntries | None:
        found = self.logs.get(province)
        if found is None:
            self.not_checked(rule, province)
        return found

    # -- rules -----------------------------------------------------------------

    def run(self) -> Report:
        for log in self.logs.values():
            self.decode(log)
            for transfer_id, entries in log.by_transfer.items():
                self.once(log, transfer_id, entries)
                self.deadline(log, entries)
                for index, leaf in entries:
                    if isinstance(leaf, PeerLeaf) and leaf.kind is LeafKind.TRANSFER_OFFERED:
                        self.offer(log, index, leaf, entries)
                    elif isinstance(leaf, PeerLeaf) and leaf.kind is LeafKind.MESSAGE_ACKNOWLEDGED:
                        self.acknowledged(log, index, leaf, entries)
                    elif isinstance(leaf, TransferLeaf):
                        self.transfer_entry(log, index, leaf, entries)
        return Report(self.tallies, self.findings, self.newest, self.horizon, self.unchecked)

    def decode(self, log: NodeEntries) -> None:
        tally = self.tallies[Rule.DECODE]
        tally.checked += log.size
        tally.passed += log.size - len(log.undecodable)
        tally.failed += len(log.undecodable)
        for index, kind, why in log.undecodable:
            name = kind_name(kind) if kind >= 0 else "no kind"
            self.findings.append(Finding(Rule.DECODE, log.province, index, name, "", f"does not decode: {why}"))

    def once(self, log: NodeEntries, transfer_id: str, entries: list[Indexed]) -> None:
        transfer = [(i, leaf) for i, leaf in entries if isinstance(leaf, TransferLeaf)]
        if not transfer:
            return
        requested = [(i, leaf) for i, leaf in transfer if leaf.kind is LeafKind.TRANSFER_REQUESTED]
        decided = [(i, leaf) for i, leaf in transfer if leaf.kind in DECISION_KINDS]
        problems = []
        for what, found in (("requested", requested), ("decided", decided)):
            if len(found) > 1:
                listed = ", ".join(f"{i} ({kind_name(leaf.kind)})" for i, leaf in found)
                problems.append(f"{what} {len(found)} times on this node: entries {listed}")
        index, leaf = (decided[1] if len(decided) > 1 else requested[1]) if problems else transfer[0]
        self.outcome(Rule.ONCE, log, index, leaf, problems)

    def deadline(self, log: NodeEntries, entries: list[Indexed]) -> None:
        """A transfer this node decides (to one of its schools) must be decided by its deadline."""
        transfer = [(i, leaf) for i, leaf in entries if isinstance(leaf, TransferLeaf)]
        if any(leaf.kind in DECISION_KINDS for _, leaf in transfer):
            return
        for index, leaf in transfer:
            if leaf.kind is LeafKind.TRANSFER_REQUESTED and leaf.to_province == log.province and leaf.deadline:
                self.waiting(log, index, leaf, f"undecided past its deadline {leaf.deadline:%Y-%m-%d %H:%M} UTC",
                             since=leaf.deadline)  # fmt: skip

    def offer(self, log: NodeEntries, index: int, offer: PeerLeaf, entries: list[Indexed]) -> None:
        """Sender side: the offer is acknowledged with its package digest, or refused for good."""
        receiver = self.peer_log(Rule.OFFERS, offer.peer)
        if receiver is None:
            return
        acks = _acknowledgements(entries, MessageKind.OFFER, offer.peer)
        refusals = [(i, leaf) for i, leaf in entries if _is_refusal(leaf) and isinstance(leaf, PeerLeaf)
                    and leaf.peer == offer.peer and leaf.digest == offer.digest]  # fmt: skip
        theirs = [
            (j, leaf)
            for j, leaf in receiver.by_transfer.get(offer.transfer_id, [])
            if isinstance(leaf, TransferLeaf) and leaf.kind is LeafKind.TRANSFER_REQUESTED
        ]
        if acks:
            ours = next(
                (
                    leaf
                    for _, leaf in entries
                    if isinstance(leaf, TransferLeaf) and leaf.kind is LeafKind.TRANSFER_REQUESTED
                ),
                None,
            )
            for ack_index, ack in acks:
                self.offer_ack(log, receiver, index, offer, ack_index, ack, ours)
        elif refusals:
            refusal_index, refusal = refusals[0]
            problems = [
                f"the offer was refused for good here, yet node {receiver.province} logged the transfer as "
                f"requested at entry {j}"
                for j, _ in theirs
            ]
            self.outcome(Rule.OFFERS, log, refusal_index, refusal, problems)
        else:
            self.waiting(log, index, offer, f"offer to {offer.peer} neither acknowledged nor refused")

    def offer_ack(
        self,
        log: NodeEntries,
        receiver: NodeEntries,
        offer_index: int,
        offer: PeerLeaf,
        index: int,
        ack: PeerLeaf,
        ours: TransferLeaf | None,
    ) -> None:
        problems = []
        if ack.digest != offer.digest:
            problems.append(
                f"acknowledges package {_short(ack.digest)}, but the offer (entry {offer_index}) logged package "
                f"{_short(offer.digest)}"
            )
        where = ack.peer_log_index
        if where == NO_PEER_ENTRY:
            problems.append(f"names no entry of {receiver.province}'s log, but a received offer is always logged")
        elif where >= receiver.size:
            if not problems:
                self.waiting(log, index, ack, f"names entry {where} of {receiver.province}, past its checkpoint "
                             f"of {receiver.size} entries")  # fmt: skip
                return
        else:
            there = receiver.by_index.get(where)
            if not (
                isinstance(there, TransferLeaf)
                and there.kind is LeafKind.TRANSFER_REQUESTED
                and there.transfer_id == ack.transfer_id
                and there.from_province == log.province
                and there.to_province == receiver.province
                and there.actor == f"peer:{log.province}"
            ):
                problems.append(
                    f"names entry {where} of {receiver.province}, which is {_describe(there)}, not its "
                    "transfer.requested of this transfer from this node"
                )
            elif ours is not None and (ours.record, ours.from_school, ours.to_school) != (
                there.record,
                there.from_school,
                there.to_school,
            ):
                problems.append(
                    f"entry {where} of {receiver.province} names another record or other schools than this "
                    "node's transfer.requested"
                )
        self.outcome(Rule.OFFERS, log, index, ack, problems)

    def acknowledged(self, log: NodeEntries, index: int, ack: PeerLeaf, entries: list[Indexed]) -> None:
        """An acknowledgement is of a message this node logged sending (its offer, its decision), or of a
        cancellation request (which makes no entry before it)."""
        if ack.message_kind == MessageKind.CANCEL_REQUEST:
            self.cancel_ack(log, index, ack)
            return
        if ack.message_kind == MessageKind.OFFER:
            sent = any(isinstance(x, PeerLeaf) and x.kind is LeafKind.TRANSFER_OFFERED and x.peer == ack.peer
                       for _, x in entries)  # fmt: skip
            rule, what = Rule.OFFERS, f"acknowledges an offer to {ack.peer} this node never logged"
        elif ack.message_kind == MessageKind.RESOLVE:
            sent = any(isinstance(x, TransferLeaf) and x.kind in DECISION_KINDS and x.to_province == log.province
                       and x.from_province == ack.peer for _, x in entries)  # fmt: skip
            rule, what = Rule.DECISIONS, f"acknowledges a decision sent to {ack.peer} this node never logged"
        else:
            sent, rule, what = (
                False,
                Rule.OFFERS,
                f"acknowledges a message of kind {ack.message_kind}, which no node sends",
            )
        if not sent:
            self.failed(rule, log, index, ack, what)

    def cancel_ack(self, log: NodeEntries, index: int, ack: PeerLeaf) -> None:
        """An acknowledged cancellation request names the receiver's cancellation, or nothing."""
        receiver = self.peer_log(Rule.DECISIONS, ack.peer)
        if receiver is None or ack.peer_log_index == NO_PEER_ENTRY:
            if receiver is not None:
                self.passed(Rule.DECISIONS)
            return
        where = ack.peer_log_index
        if where >= receiver.size:
            self.waiting(log, index, ack, f"names entry {where} of {receiver.province}, past its checkpoint")
            return
        there = receiver.by_index.get(where)
        good = (
            isinstance(there, TransferLeaf)
            and there.kind is LeafKind.TRANSFER_CANCELLED
            and there.transfer_id == ack.transfer_id
            and there.actor == f"peer:{log.province}"
        )
        problems = [] if good else [f"names entry {where} of {receiver.province}, which is {_describe(there)}, "
                                    "not its cancellation of this transfer"]  # fmt: skip
        self.outcome(Rule.DECISIONS, log, index, ack, problems)

    def transfer_entry(self, log: NodeEntries, index: int, leaf: TransferLeaf, entries: list[Indexed]) -> None:
        here = log.province
        incoming = leaf.to_province == here and leaf.from_province != here
        outgoing = leaf.from_province == here and leaf.to_province != here
        if incoming and leaf.kind is LeafKind.TRANSFER_REQUESTED:
            self.incoming_offer(log, index, leaf)
        elif incoming and leaf.kind in DECISION_KINDS:
            self.decision(log, index, leaf, entries)
        elif outgoing and leaf.kind in DECISION_KINDS:
            self.resolution(log, index, leaf, entries)

    def incoming_offer(self, log: NodeEntries, index: int, leaf: TransferLeaf) -> None:
        """Receiver side: a transfer from another province arrived as an offer its sender logged."""
        sender = self.peer_log(Rule.OFFERS, leaf.from_province)
        if sender is None:
            return
        offered = any(
            isinstance(x, PeerLeaf) and x.kind is LeafKind.TRANSFER_OFFERED and x.peer == log.province
            for _, x in sender.by_transfer.get(leaf.transfer_id, [])
        )
        if offered:
            self.passed(Rule.OFFERS)
        else:
            self.waiting(log, index, leaf, f"arrived from {sender.province}, whose log holds no offer of it")

    def decision(self, log: NodeEntries, index: int, decided: TransferLeaf, entries: list[Indexed]) -> None:
        """Receiver side: the decision reached the sender, which applied the same decision."""
        sender = self.peer_log(Rule.DECISIONS, decided.from_province)
        if sender is None:
            return
        acks = _acknowledgements(entries, MessageKind.RESOLVE, sender.province)
        if not acks:
            self.waiting(log, index, decided, f"decision not acknowledged by {sender.province}")
            return
        for ack_index, ack in acks:
            where = ack.peer_log_index
            problems = []
            if where == NO_PEER_ENTRY:
                # The sender had applied it already: its log must hold it.
                if not any(
                    self._same_decision(x, decided, log.province)
                    for _, x in sender.by_transfer.get(decided.transfer_id, [])
                ):
                    problems.append(
                        f"the acknowledgement says {sender.province} had applied it already, but its log holds no "
                        f"{kind_name(decided.kind)} of this transfer by peer:{log.province}"
                    )
            elif where >= sender.size:
                self.waiting(log, ack_index, ack, f"names entry {where} of {sender.province}, past its checkpoint "
                             f"of {sender.size} entries")  # fmt: skip
                continue
            else:
                there = sender.by_index.get(where)
                if not self._same_decision(there, decided, log.province):
                    problems.append(
                        f"the acknowledgement (entry {ack_index}) names entry {where} of {sender.province}, which "
                        f"is {_describe(there)}, not the same {kind_name(decided.kind)} by peer:{log.province}"
                    )
            self.outcome(Rule.DECISIONS, log, index, decided, problems)

    @staticmethod
    def _same_decision(there: LogLeaf | None, decided: TransferLeaf, receiver: str) -> bool:
        return (
            isinstance(there, TransferLeaf)
            and there.kind is decided.kind
            and there.actor == f"peer:{receiver}"
            and (there.transfer_id, there.record, there.reason) == (decided.transfer_id, decided.record, decided.reason)
            and (there.from_province, there.from_school, there.to_province, there.to_school)
            == (decided.from_province, decided.from_school, decided.to_province, decided.to_school)
        )

    def resolution(self, log: NodeEntries, index: int, leaf: TransferLeaf, entries: list[Indexed]) -> None:
        """Sender side: an outgoing transfer is decided only by the receiving node, or refused by it for good."""
        receiver = leaf.to_province
        if leaf.actor == f"node:{receiver}":
            refused = any(_is_refusal(x) and isinstance(x, PeerLeaf) and x.peer == receiver for _, x in entries)
            problems = [] if refused else [f"refused for good by {receiver}, but no refusal entry follows the offer"]
            self.outcome(Rule.DECISIONS, log, index, leaf, problems)
            return
        if leaf.actor != f"peer:{receiver}":
            self.failed(Rule.DECISIONS, log, index, leaf,
                        f"decided by {leaf.actor} on the sending node; only the receiving node {receiver} decides")  # fmt: skip
            return
        theirs = self.peer_log(Rule.DECISIONS, receiver)
        if theirs is None:
            return
        made = [
            x.kind
            for _, x in theirs.by_transfer.get(leaf.transfer_id, [])
            if isinstance(x, TransferLeaf) and x.kind in DECISION_KINDS
        ]
        if leaf.kind in made:
            self.passed(Rule.DECISIONS)
        elif made:
            self.failed(Rule.DECISIONS, log, index, leaf,
                        f"{receiver} decided it as {', '.join(kind_name(k) for k in made)}")  # fmt: skip
        else:
            self.waiting(
                log, index, leaf, f"applied as {receiver}'s decision, but {receiver}'s log holds no such decision"
            )


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} s"


def check_federation(logs: Sequence[NodeEntries], horizon: timedelta = DEFAULT_HORIZON) -> Report:
    """Check every rule over the logs given (one per province)."""
    provinces = [log.province for log in logs]
    if len(set(provinces)) != len(provinces):
        raise ValueError(f"one log per province: {provinces}")
    return _Audit(logs, horizon).run()

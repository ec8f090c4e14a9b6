"""The log's identity: its origin (unique, kept for the log's life) and the keys GetLogInfo serves
for auditors, schools and peers to compare with the values they pinned out of band."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.federation import free_port, peer_block
from tests.support import (
    FakeClock,
    RunningNode,
    load_config,
    new_lookup_code,
    new_national_id,
    running_node,
    schools_and_a_transfer,
    write_config,
)
from transfer.client import NO_RETRY, ClientTls, TransferClient
from transfer.client.logverify import LogVerificationError, LogVerifier, PinMismatch
from transfer.devpki import make_dev_pki
from transfer.keygen import main as keygen
from transfer.ledger.note import open_checkpoint, parse_vkey
from transfer.server.__main__ import main as server_main
from transfer.server.app import StartRefused
from transfer.server.config import ConfigError
from transfer.server.verify import main as verify_log
from transfer.v1 import common_pb2

ORIGIN = "hocba.invalid/province/01/log"


@pytest.fixture(scope="module")
def pki79(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki79")
    make_dev_pki(out, "79", ["D1"])
    return out


def _config_file(
    tmp_path: Path, pki: Path, database_url: str, extra: str = "", *, name: str = "node", latest: Path | None = None
) -> Path:
    return write_config(
        tmp_path / f"{name}.toml", pki=pki, database_url=database_url, extra=extra, latest_checkpoint_file=latest
    )


def _with_log_keys(path: Path, lines: str) -> Path:
    """The config file with `lines` added to its [log] table."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("checkpoint_interval_seconds = 0.2\n", f"checkpoint_interval_seconds = 0.2\n{lines}"))
    return path


def test_log_info_is_served_to_schools_auditors_and_peers(
    tmp_path: Path, pki: Path, pki79: Path, database_url: str
) -> None:
    """A school, an auditor and a peer node get the same origin, log and seal verifier keys and an empty
    witness policy; the served log key (named after the origin) verifies the served checkpoint, and a verifier pinned to it accepts it."""
    extra = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", free_port())
    path = _config_file(tmp_path, pki, database_url, extra)
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        sent = schools_and_a_transfer(node)
        s1 = node.client("school-S1")
        assert node.node is not None
        node.run(node.node.publish_checkpoint)
        tls = ClientTls.from_files(pki / "ca.pem", pki79 / "node.pem", pki79 / "node.key")
        with TransferClient(node.address, tls, retry=NO_RETRY) as peer:
            infos = [c.get_log_info() for c in (s1, node.client("auditor"), peer)]
        assert infos[0] == infos[1] == infos[2]
        info = infos[0]
        assert info.origin == ORIGIN == sent.receipt.origin
        assert info.log_vkey == (pki / "log.vkey").read_text().strip()
        assert info.log_vkey.startswith(f"{ORIGIN}+")  # the dev PKI names the log key after the origin
        assert info.seal_vkey == (pki / "seal.vkey").read_text().strip()
        assert list(info.witnesses) == [] and info.witness_quorum == 0
        checkpoint = open_checkpoint(s1.get_checkpoint().checkpoint, parse_vkey(info.log_vkey), info.origin)
        assert checkpoint.size == sent.receipt.index + 1

        pinned = LogVerifier(s1, (pki / "log.vkey").read_text().strip(), tmp_path / "trusted", origin=ORIGIN)
        assert pinned.check_log_info() == info
        assert pinned.verify_receipt(sent.receipt).size == checkpoint.size


def test_a_verifier_pinned_to_another_key_or_origin_refuses_the_log_info(
    tmp_path: Path, pki: Path, rogue_pki: Path, database_url: str
) -> None:
    """LogVerifier.check_log_info compares what the node serves with the pinned values: another log key,
    or another origin, is PinMismatch (without a seal key the node serves an empty seal_vkey)."""
    path = _config_file(tmp_path, pki, database_url)
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        s1 = node.client("school-S1")
        assert s1.get_log_info().seal_vkey == ""
        other_key = (rogue_pki / "log.vkey").read_text().strip()
        with pytest.raises(PinMismatch, match="not the pinned"):
            LogVerifier(s1, other_key, tmp_path / "a", origin=ORIGIN).check_log_info()
        own_key = (pki / "log.vkey").read_text().strip()
        with pytest.raises(PinMismatch, match="origin"):
            LogVerifier(s1, own_key, tmp_path / "b", origin="hocba.example.vn/province/01/log").check_log_info()


def test_the_default_origin_is_made_from_the_domain_and_province(tmp_path: Path, pki: Path) -> None:
    """Without log.origin the origin is "<node.domain>/province/<code>/log" (node.domain defaults to
    hocba.invalid); an explicit log.origin wins; a bad domain or an origin with a space or '+' is refused."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    path = _config_file(tmp_path, pki, url)
    assert load_config(path).log_origin == ORIGIN
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[node]\n", '[node]\ndomain = "hocba.moet.gov.vn"\n'), encoding="utf-8")
    assert load_config(path).log_origin == "hocba.moet.gov.vn/province/01/log"
    _with_log_keys(path, 'origin = "hocba-node-01"\n')
    assert load_config(path).log_origin == "hocba-node-01"
    for domain in ("Hocba.VN", "hocba", "hocba..vn", "https://hocba.vn", "-a.vn"):
        bad = _config_file(tmp_path, pki, url, name="bad")
        bad.write_text(bad.read_text().replace("[node]\n", f'[node]\ndomain = "{domain}"\n'), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"node\.domain"):
            load_config(bad)
    for origin in ("hocba.vn/log one", "hocba.vn/log+1"):
        bad = _with_log_keys(_config_file(tmp_path, pki, url, name="bad"), f'origin = "{origin}"\n')
        with pytest.raises(ConfigError, match=r"log\.origin"):
            load_config(bad)


def test_a_changed_origin_is_refused_on_an_existing_database(tmp_path: Path, pki: Path, database_url: str) -> None:
    """A node whose database holds checkpoints of one origin refuses to start under another (a changed
    log.origin or node.domain) and names the origin to keep; configured back, it starts; a new database
    takes any origin."""
    path = _config_file(tmp_path, pki, database_url)
    clock = FakeClock()
    with running_node(load_config(path), pki, clock) as node:
        node.client("province-admin").register_school("S1", "Trường S1")
        assert node.node is not None
        node.run(node.node.publish_checkpoint)

    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("[node]\n", '[node]\ndomain = "hocba.moet.gov.vn"\n'), encoding="utf-8")
    with pytest.raises(StartRefused) as info, running_node(load_config(path), pki, clock):
        pass
    message = str(info.value)
    assert message.startswith("LOG_ORIGIN_CHANGED") and f"log.origin = {ORIGIN!r}" in message
    assert "hocba.moet.gov.vn/province/01/log" in message

    _with_log_keys(path, f'origin = "{ORIGIN}"\n')  # the stored origin, now explicit: the same log goes on
    with running_node(load_config(path), pki, clock) as node:
        assert node.client("school-S1").get_log_info().origin == ORIGIN

    path.write_text(original, encoding="utf-8")
    _with_log_keys(path, 'origin = "hocba.invalid/province/01/log2"\n')
    with pytest.raises(StartRefused, match="LOG_ORIGIN_CHANGED"), running_node(load_config(path), pki, clock):
        pass

    fresh = _with_log_keys(
        _config_file(tmp_path, pki, f"sqlite:///{tmp_path / 'fresh.db'}", name="fresh"),
        'origin = "hocba.invalid/province/01/log2"\n',
    )
    with running_node(load_config(fresh), pki, clock) as node:
        assert node.client("school-S1").get_log_info().origin == "hocba.invalid/province/01/log2"


def test_production_keys_from_keygen_or_openssl_pem_serve_a_node(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m transfer.keygen` writes a log key named after the origin (mode 0600, never over an existing
    one) and a seal key from an Ed25519 PEM; a node configured with them serves and signs with them."""
    origin = "hocba.moet.gov.vn/province/01/log"
    keys = tmp_path / "keys"
    keys.mkdir()
    assert keygen(["--name", origin, "--out", str(keys), "--stem", "log"]) == 0
    log_vkey = capsys.readouterr().out.strip()
    assert (keys / "log.vkey").read_text().strip() == log_vkey and log_vkey.startswith(f"{origin}+")
    assert (keys / "log.key").stat().st_mode & 0o777 == 0o600
    before = (keys / "log.key").read_text()
    assert keygen(["--name", origin, "--out", str(keys), "--stem", "log"]) == 2
    assert "exists; not replaced" in capsys.readouterr().err and (keys / "log.key").read_text() == before
    pem = tmp_path / "seal.pem"
    pem.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    seal_name = "hocba.moet.gov.vn/province/01/seal"
    assert keygen(["--name", seal_name, "--out", str(keys), "--stem", "seal", "--from-pem", str(pem)]) == 0
    seal_vkey = capsys.readouterr().out.strip()
    assert (
        keygen(["--name", "x.vn/l", "--out", str(keys / "new"), "--stem", "seal", "--from-pem", str(keys / "log.vkey")])
        == 2
    )

    path = _config_file(tmp_path, pki, f"sqlite:///{tmp_path / 'node.db'}")
    text = path.read_text(encoding="utf-8").replace(str(pki / "log.key"), str(keys / "log.key"))
    text = text.replace("[node]\n", '[node]\ndomain = "hocba.moet.gov.vn"\n')
    path.write_text(text + f'\n[seal]\nkey_file = "{keys / "seal.key"}"\n', encoding="utf-8")
    with running_node(load_config(path), pki, FakeClock()) as node:
        s1 = node.client("school-S1")
        info = s1.get_log_info()
        assert (info.origin, info.log_vkey, info.seal_vkey) == (origin, log_vkey, seal_vkey)
        assert open_checkpoint(s1.get_checkpoint().checkpoint, parse_vkey(log_vkey), origin).origin == origin


def _flow(node: RunningNode, transfers: int) -> None:
    """`transfers` transfers initiated by S1, then a checkpoint over them."""
    s1 = node.client("school-S1")
    for _ in range(transfers):
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        s1.initiate_transfer(code, "S2")
    assert node.node is not None
    node.run(node.node.publish_checkpoint)


def test_a_log_key_rotates_without_breaking_verifiers_or_the_nodes_checks(
    tmp_path: Path, pki: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With log.next_key_file every checkpoint is signed by both keys: verifiers pinned to either accept it and
    GetLogInfo announces the next key. After the switch (the new key as log.key_file, the old vkey in
    log.previous_vkey_files) the node starts on its latest-checkpoint file, transfer-verify-log accepts the
    older checkpoints, and verifiers re-pinned to the new key go on from their trusted state."""
    keys = tmp_path / "keys"
    keys.mkdir()
    assert keygen(["--name", ORIGIN, "--out", str(keys), "--stem", "log"]) == 0
    new_vkey = capsys.readouterr().out.strip()
    old_vkey = (pki / "log.vkey").read_text().strip()
    path = _config_file(tmp_path, pki, database_url, latest=tmp_path / "latest")
    original = path.read_text(encoding="utf-8")
    clock = FakeClock()
    with running_node(load_config(path), pki, clock) as node:
        admin = node.client("province-admin")
        for code in ("S1", "S2"):
            admin.register_school(code, f"Trường {code}")
        _flow(node, 2)
        old_pin = LogVerifier(node.client("auditor"), old_vkey, tmp_path / "old-pin", origin=ORIGIN)
        before = old_pin.refresh()
        stale = (tmp_path / "old-pin").read_text(encoding="utf-8")  # signed by the old key only

    # The window: both keys sign.
    _with_log_keys(path, f'next_key_file = "{keys / "log.key"}"\n')
    with running_node(load_config(path), pki, clock) as node:
        _flow(node, 1)
        auditor = node.client("auditor")
        info = auditor.get_log_info()
        assert (info.log_vkey, info.next_log_vkey) == (old_vkey, new_vkey)
        assert LogVerifier(auditor, old_vkey, tmp_path / "old-pin", origin=ORIGIN).refresh().size > before.size
        new_pin = LogVerifier(auditor, new_vkey, tmp_path / "new-pin", origin=ORIGIN)
        assert new_pin.check_log_info() == info
        window = new_pin.refresh()
        note = auditor.get_checkpoint().checkpoint
        assert open_checkpoint(note, parse_vkey(old_vkey), ORIGIN) == open_checkpoint(note, parse_vkey(new_vkey))

    # The switch: the new key signs alone; the old one only checks older checkpoints.
    path.write_text(original.replace(str(pki / "log.key"), str(keys / "log.key")), encoding="utf-8")
    assert verify_log(["--config", str(path), "--quiet"]) == 1  # older checkpoints: signed by the old key only
    assert "signature or format is invalid" in capsys.readouterr().out
    _with_log_keys(path, f'previous_vkey_files = ["{pki / "log.vkey"}"]\n')
    assert verify_log(["--config", str(path), "--quiet"]) == 0
    with running_node(load_config(path), pki, clock) as node:
        _flow(node, 1)
        auditor = node.client("auditor")
        info = auditor.get_log_info()
        assert (info.log_vkey, info.next_log_vkey, list(info.previous_log_vkeys)) == (new_vkey, "", [old_vkey])
        assert LogVerifier(auditor, new_vkey, tmp_path / "new-pin", origin=ORIGIN).refresh().size > window.size
        with pytest.raises(LogVerificationError):  # no longer signed by the old key
            LogVerifier(auditor, old_vkey, tmp_path / "old-pin", origin=ORIGIN).refresh()
        # A verifier last refreshed before the window re-pins to the new key, and names the old one for its
        # trusted state only.
        (tmp_path / "stale").write_text(stale, encoding="utf-8")
        with pytest.raises(LogVerificationError):
            LogVerifier(auditor, new_vkey, tmp_path / "stale", origin=ORIGIN).refresh()
        repinned = LogVerifier(auditor, new_vkey, tmp_path / "stale", origin=ORIGIN, previous_vkeys=[old_vkey])
        assert repinned.refresh().size > window.size


def test_rotation_keys_that_are_the_log_key_or_unreadable_are_refused(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """log.next_key_file or log.previous_vkey_files naming the log key itself, or a previous key file that is
    not a verifier key, stop the node before it serves (and fail --check-config and transfer-verify-log), with the file named."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    garbage = tmp_path / "garbage.vkey"
    garbage.write_text("not a key\n", encoding="utf-8")
    cases = [
        (f'next_key_file = "{pki / "log.key"}"\n', "is the log key itself"),
        (f'previous_vkey_files = ["{pki / "log.vkey"}"]\n', "names a key the log signs with"),
        (f'previous_vkey_files = ["{garbage}"]\n', "not a signed-note verifier key"),
    ]
    for i, (line, message) in enumerate(cases):
        path = _with_log_keys(_config_file(tmp_path, pki, url, name=f"bad{i}"), line)
        with pytest.raises(OSError, match=message), running_node(load_config(path), pki, FakeClock()):
            pass
        assert verify_log(["--config", str(path), "--quiet"]) == 2
        assert server_main(["--config", str(path), "--check-config"]) == 1
        assert message in capsys.readouterr().err

"""The command-line client: readable lines, JSON, exit statuses and one-line reasons."""

from __future__ import annotations

import importlib.metadata
import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.support import (
    ROOT,
    TEST_RETRY,
    RunningNode,
    ServerProcess,
    new_lookup_code,
    new_national_id,
    write_config,
)
from transfer.client import ClientTls, TransferClient
from transfer.client.cli import main
from transfer.devpki import main as devpki_main
from transfer.v1 import common_pb2


def cli(node: RunningNode, identity: str, *args: str) -> list[str]:
    return ["--address", node.address, "--pki", str(node.pki), "--as", identity, "--attempts", "2", *args]


def unreachable(node: RunningNode) -> list[str]:
    """Options naming a port where no node listens, with few, short attempts."""
    return [
        "--address",
        "127.0.0.1:1",
        "--pki",
        str(node.pki),
        "--as",
        "school-S1",
        "--attempts",
        "2",
        "--timeout",
        "2",
    ]


def test_cli_transfer_flow(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """register, initiate, list, accept and watch from the command line, one line per object."""
    code = new_lookup_code()
    assert main(cli(node, "school-S1", "record-register", code, new_national_id(), "primary")) == 0
    assert f"record {code} primary" in capsys.readouterr().out
    assert main(cli(node, "school-S1", "--json", "initiate", code, "S2")) == 0
    transfer = json.loads(capsys.readouterr().out)
    assert transfer["state"] == "TRANSFER_STATE_REQUESTED" and transfer["to_school"] == "S2"
    assert main(cli(node, "school-S2", "list", "--incoming", "--state", "requested")) == 0
    out = capsys.readouterr().out
    assert transfer["id"] in out and "REQUESTED" in out and "S1 -> S2" in out
    assert main(cli(node, "school-S2", "accept", transfer["id"])) == 0
    assert "ACCEPTED" in capsys.readouterr().out
    assert main(cli(node, "school-S2", "watch", "--count", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "REQUESTED" in lines[0] and "ACCEPTED" in lines[1] and "cursor" in lines[1]
    assert main(cli(node, "school-S2", "record-list")) == 0
    assert code in capsys.readouterr().out


def test_cli_errors_are_one_line_with_status(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """A refusal prints one line with code and reason and exits 1; bad usage exits 2."""
    assert main(cli(node, "school-S1", "initiate", "nothex", "S2")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "INVALID_ARGUMENT INVALID_LOOKUP_CODE" in err[0] and "lookup_code" in err[0]
    assert main(cli(node, "school-S2", "reject", "a" * 32, "--reason", "x")) == 1
    assert "PERMISSION_DENIED NOT_RECEIVING_SCHOOL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(cli(node, "school-S2", "reject", "a" * 32))  # --reason is required
    assert info.value.code == 2
    assert main(["--address", node.address, "--pki", str(node.pki), "--as", "nobody", "list", "--incoming"]) == 2


def test_cli_unreachable_node_exits_3(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """When no node answers, the CLI gives up after its attempts with status 3 and says UNAVAILABLE."""
    args = unreachable(node)
    assert main([*args, "get", "a" * 32]) == 3
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_cli_school_admin_commands(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """Province admins register, rename, deactivate and list schools from the CLI."""
    assert main(cli(node, "province-admin", "school-register", "S4", "Trường Số 4")) == 0
    assert main(cli(node, "province-admin", "school-update", "S4", "--inactive")) == 0
    assert "INACTIVE" in capsys.readouterr().out.splitlines()[-1]
    assert main(cli(node, "province-admin", "school-list")) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["S1", "S2", "S3", "S4"]


def test_devpki_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The PKI command writes every credential, keys private to their owner, and refuses bad input."""
    assert devpki_main(["--out", str(tmp_path), "--province", "79", "--school", "A1"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ca.pem", "node.pem", "school-A1.key", "school-admin-A1.pem", "province-admin.pem"} <= names
    assert (tmp_path / "school-A1.key").stat().st_mode & 0o077 == 0
    assert devpki_main(["--out", str(tmp_path / "x"), "--province", "00"]) == 2
    assert "not a province code" in capsys.readouterr().err


def test_devpki_witness_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each dev node gets a witness key (cosignature/v1 vkey named after its province) unless told not to, and
    `--witness` writes a standalone witness (key, vkey, witness.toml for the given logs' vkeys) with no CA."""
    import tomllib

    from transfer.ledger.note import parse_vkey
    from transfer.ledger.witnessed import cosignature_verifier

    assert devpki_main(["--out", str(tmp_path / "p01"), "--province", "01"]) == 0
    vkey = (tmp_path / "p01" / "witness.vkey").read_text().strip()
    assert cosignature_verifier(vkey).name == "hocba.invalid/province/01/witness"
    assert (tmp_path / "p01" / "witness.key").stat().st_mode & 0o077 == 0
    assert devpki_main(["--out", str(tmp_path / "p79"), "--province", "79", "--no-witness-key"]) == 0
    assert not (tmp_path / "p79" / "witness.key").exists()
    capsys.readouterr()
    logs = [str(tmp_path / p / "log.vkey") for p in ("p01", "p79")]
    out = tmp_path / "w"
    witness_args = ["--out", str(out), "--witness", "w.example/w", "--listen", "127.0.0.1:7390"]
    assert devpki_main([*witness_args, "--log-vkey", logs[0], "--log-vkey", logs[1]]) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    assert printed == (out / "witness.vkey").read_text().strip() and cosignature_verifier(printed).name == "w.example/w"
    assert sorted(p.name for p in out.iterdir()) == ["witness.key", "witness.toml", "witness.vkey"]
    config = tomllib.loads((out / "witness.toml").read_text())
    assert config["key_file"] == "witness.key" and config["state_file"] == "witness.sqlite"
    assert config["listen"] == "127.0.0.1:7390"
    assert [(t["origin"], t["vkeys"]) for t in config["log"]] == [
        (parse_vkey(v).name, [v]) for v in (Path(f).read_text().strip() for f in logs)
    ]
    assert devpki_main(["--out", str(tmp_path / "y")]) == 2
    assert "--province is required" in capsys.readouterr().err


def test_cli_staff_and_handoff(node: RunningNode, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Admins register teachers, assign duties, list tasks, record a departure and list handoffs from the CLI."""
    from datetime import UTC, datetime

    from tests.staffing import YEAR
    from transfer.devpki import SigningCA

    ca = SigningCA.load(node.pki)
    ids = {}
    for code in ("CN", "CN2"):
        pem, key = ca.teacher(code, "ecdsa", not_before=datetime(2026, 1, 1, tzinfo=UTC), write=False)
        (tmp_path / f"{code}.pem").write_bytes(pem)
        from cryptography.hazmat.primitives import serialization

        (tmp_path / f"{code}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        assert (
            main(
                cli(
                    node,
                    "school-admin-S1",
                    "--json",
                    "teacher-register",
                    code,
                    f"Cô {code}",
                    "--cert",
                    str(tmp_path / f"{code}.pem"),
                )
            )
            == 0
        )
        ids[code] = json.loads(capsys.readouterr().out)["id"]
    assert main(cli(node, "school-admin-S1", "duty-assign", f"homeroom/{YEAR}/3A", ids["CN"])) == 0
    assert f"homeroom/{YEAR}/3A" in capsys.readouterr().out
    code = new_lookup_code()
    assert main(cli(node, "school-S1", "record-register", code, new_national_id(), "primary")) == 0
    (tmp_path / "page.pdf").write_bytes(b"%PDF-1.7 lop 3A")
    assert (
        main(
            cli(
                node,
                "school-S1",
                "--json",
                "page-add",
                code,
                YEAR,
                "3",
                "3A",
                str(tmp_path / "page.pdf"),
                "--require",
                "homeroom",
            )
        )
        == 0
    )
    page_id = json.loads(capsys.readouterr().out.splitlines()[-1])["id"]
    assert main(cli(node, "school-S1", "task-list", ids["CN"])) == 0
    assert page_id in capsys.readouterr().out
    assert (
        main(
            cli(
                node,
                "school-admin-S1",
                "depart",
                ids["CN"],
                "--reason",
                "retirement",
                "--effective",
                "2026-11-23",
                "--replacement",
                ids["CN2"],
            )
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "retirement" in out and "COMPLETED" in out and "moved 1 task" in out
    assert (
        main(cli(node, "school-S1", "page-sign", page_id, "homeroom", ids["CN2"], "--key", str(tmp_path / "CN2.key")))
        == 0
    )
    assert "SIGNED" in capsys.readouterr().out
    assert main(cli(node, "school-S1", "page-lock", page_id)) == 0
    assert "LOCKED" in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "handoff-list")) == 0
    assert ids["CN"] in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "duty-list", "--teacher", ids["CN2"])) == 0
    assert f"homeroom/{YEAR}/3A" in capsys.readouterr().out
    assert (
        main(cli(node, "school-S1", "depart", ids["CN2"], "--reason", "retirement", "--effective", "2026-11-23")) == 1
    )
    assert "SCHOOL_ADMIN_ONLY" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(
    node: RunningNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Command lines argparse accepts but that cannot run (no credentials, no address, a bad requirement or duty) exit 2."""
    for var in ("TRANSFER_ADDRESS", "TRANSFER_CA", "TRANSFER_CERT", "TRANSFER_KEY", "TRANSFER_PKI", "TRANSFER_AS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "page.pdf").write_bytes(b"%PDF-1.7")
    cases = [
        ["--address", node.address, "list", "--incoming"],
        ["--pki", str(node.pki), "--as", "school-S1", "list", "--incoming"],
        cli(node, "school-S1", "page-add", new_lookup_code(), "2026-2027", "3", "3A", str(tmp_path / "page.pdf"),
            "--require", "teacher"),
        cli(node, "school-admin-S1", "duty-assign", "homeroom/2026-2027", "a" * 32),
        cli(node, "school-admin-S1", "depart", "a" * 32, "--reason", "retirement", "--effective", "2026-11-23",
            "--duty", "principal"),
    ]  # fmt: skip
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("transfer-cli: "), err


def test_cli_page_sign_with_an_unusable_key_file(
    node: RunningNode, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """page-sign with a key file that is not a PEM key, is encrypted or is of an unsupported type exits 2, no traceback."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    from tests.staffing import HOMEROOM, add_page, duty, hire, new_record, signing_ca

    school_admin, s1 = node.client("school-admin-S1"), node.client("school-S1")
    teacher = hire(school_admin, signing_ca(node.pki), "CN")
    school_admin.assign_duty(duty(HOMEROOM), teacher.id)
    page = add_page(s1, new_record(s1), requirements=[HOMEROOM])
    (tmp_path / "garbage.key").write_bytes(b"not a key\n")
    pem = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        *pem, serialization.BestAvailableEncryption(b"secret")
    )
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    dsa_key = dsa.generate_private_key(2048).private_bytes(*pem, serialization.NoEncryption())
    (tmp_path / "dsa.key").write_bytes(dsa_key)
    for name in ("garbage.key", "encrypted.key", "dsa.key"):
        args = cli(node, "school-S1", "page-sign", page.id, "homeroom", teacher.id, "--key", str(tmp_path / name))
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("transfer-cli: ") and name in err[0], err
    assert s1.get_page(page.id).tasks[0].signed_by_teacher_id == ""


def test_cli_unusable_tls_files_exit_2(node: RunningNode, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A CA, certificate or key file that is not PEM, or a key that is not the certificate's, exits 2 naming the file."""
    pki = node.pki
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate\n")
    garbage = str(tmp_path / "garbage.pem")
    good = {"--ca": str(pki / "ca.pem"), "--cert": str(pki / "school-S1.pem"), "--key": str(pki / "school-S1.key")}
    cases = [
        ({**good, "--ca": garbage}, "garbage.pem"),
        ({**good, "--cert": garbage}, "garbage.pem"),
        ({**good, "--key": garbage}, "garbage.pem"),
        ({**good, "--key": str(pki / "school-S2.key")}, "school-S2.key"),
    ]
    for files, named in cases:
        args = ["--address", node.address, "--attempts", "2", "--timeout", "2"]
        args += [x for flag, path in files.items() for x in (flag, path)]
        assert main([*args, "get", "a" * 32]) == 2, files
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("transfer-cli: ") and named in err[0], err
    args = ["--address", node.address, *(x for flag, path in good.items() for x in (flag, path))]
    assert main([*args, "list", "--incoming"]) == 0


def test_cli_page_over_the_message_limit_is_refused_not_retried(
    node: RunningNode, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A page file too large for any gRPC message is refused once, exit 1, rather than retried and reported unavailable."""
    import grpc

    from tests.staffing import HOMEROOM, YEAR, new_record
    from transfer.client.client import MAX_MESSAGE
    from transfer.client.errors import InvalidArgument

    s1 = node.client("school-S1")
    code = new_record(s1)
    big = tmp_path / "scan.pdf"
    big.write_bytes(b"\0" * (MAX_MESSAGE + 1))
    args = cli(node, "school-S1", "page-add", code, YEAR, "3", "3A", str(big), "--require", "homeroom")
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MESSAGE_TOO_LARGE" in err[0], err

    class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        calls = 0

        def intercept_unary_unary(self, continuation: object, details: object, request: object) -> object:
            Count.calls += 1
            return continuation(details, request)  # type: ignore[operator]

    counted = node.client("school-S1", interceptors=[Count()])
    with pytest.raises(InvalidArgument) as info:
        counted.add_page(code, YEAR, 3, "3A", big.read_bytes(), [HOMEROOM])
    assert info.value.reason == "MESSAGE_TOO_LARGE" and not info.value.transient
    assert Count.calls == 0  # nothing sent


def test_cli_unavailable_mutation_names_its_request_id(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """A mutation that ends unavailable prints the request id it sent, and running it again with that id is safe."""
    code = new_lookup_code()
    assert main(cli(node, "school-S1", "record-register", code, new_national_id(), "primary")) == 0
    capsys.readouterr()
    down = unreachable(node)
    assert main([*down, "initiate", code, "S2"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "UNAVAILABLE" in err[0], err
    found = re.search(r"--request-id ([0-9a-f-]{36})", err[0])
    assert found, err[0]
    again = cli(node, "school-S1", "--json", "initiate", code, "S2", "--request-id", found.group(1))
    assert main(again) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(again) == 0  # a repeat: the first answer, no TRANSFER_ALREADY_OPEN
    assert json.loads(capsys.readouterr().out)["id"] == first["id"]


def test_cli_timeout_and_attempts_must_be_positive(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """--timeout 0 or --attempts -1 is a usage error (exit 2) naming the option, not a call that can never run."""
    for option, value in (("--timeout", "0"), ("--attempts", "-1"), ("--timeout", "soon")):
        with pytest.raises(SystemExit) as info:
            main(["--address", node.address, "--pki", str(node.pki), "--as", "school-S1", option, value, "school-list"])
        assert info.value.code == 2
        assert option in capsys.readouterr().err


def test_cli_output_into_a_closed_pipe_ends_quietly(node: RunningNode, tmp_path: Path) -> None:
    """`transfer-cli … | head -1`: when the reader goes away the CLI stops with status 0 and no traceback."""
    admin = node.client("province-admin")
    for i in range(300):
        admin.register_school(f"P{i:03d}", f"Trường {i}")
    args = [sys.executable, "-m", "transfer.client.cli", *cli(node, "province-admin", "school-list")]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away after one line
        err = proc.stderr.read()
        assert proc.wait(30) == 0, err
    assert first and b"Traceback" not in err and b"Broken pipe" not in err, err


DROPPED = re.compile(r"transfer-cli: watch dropped \((\w+)\b.*\); reconnect (\d+)( of \d+)? in [0-9.e-]+ s$")


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def _next_line(lines: queue.Queue[str], deadline: float, what: str) -> str:
    try:
        return lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise AssertionError(f"no {what} in time") from None


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the client's behaviour, not the engine's
def test_cli_watch_outlasts_a_stopped_node_and_resumes_from_its_cursor(
    tmp_path: Path, pki: Path, database_url: str
) -> None:
    """`watch` keeps reconnecting while the node is down, far past the 20 reconnections it used to give up
    after, with one line per attempt on stderr; once the node is back it says it resumed from its cursor,
    and an event made then is printed once on stdout, with no repeat of the one before."""
    server = ServerProcess(write_config(tmp_path / "node.toml", pki=pki, database_url=database_url), tmp_path / "log")
    server.start()
    try:
        with TransferClient(server.address, ClientTls.from_pki(pki, "province-admin"), retry=TEST_RETRY) as admin:
            for school in ("S1", "S2"):
                admin.register_school(school, f"Trường {school}")
        with TransferClient(server.address, ClientTls.from_pki(pki, "school-S1"), retry=TEST_RETRY) as s1:
            codes = [new_lookup_code(), new_lookup_code()]
            for code in codes:
                s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
            before = s1.initiate_transfer(codes[0], "S2").transfer.id
            # --count 2: the event before the outage and the one after, then exit 0 (a repeat would be the 2nd).
            args = ["--address", server.address, "--pki", str(pki), "--as", "school-S2"]
            args += ["watch", "--count", "2", "--max-backoff", "0.05"]
            with subprocess.Popen(
                [sys.executable, "-m", "transfer.client.cli", *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            ) as proc:  # fmt: skip
                assert proc.stdout is not None and proc.stderr is not None
                out: queue.Queue[str] = queue.Queue()
                err: queue.Queue[str] = queue.Queue()
                readers = [
                    threading.Thread(target=_lines, args=(stream, lines), daemon=True)
                    for stream, lines in ((proc.stdout, out), (proc.stderr, err))
                ]
                for reader in readers:
                    reader.start()
                try:
                    deadline = time.monotonic() + 30
                    first = _next_line(out, deadline, "first event")
                    assert before in first and "REQUESTED" in first, first
                    found = re.search(r"\[cursor (\S+)\]$", first)
                    assert found, first

                    server.kill()
                    dropped: list[str] = []
                    while len(dropped) < 25:  # more than the 20 the watch used to allow
                        line = _next_line(err, deadline, f"'watch dropped' line after {len(dropped)}")
                        assert DROPPED.match(line), line
                        dropped.append(line)
                    assert proc.poll() is None, "the watch gave up"

                    server.start()
                    deadline = time.monotonic() + 30
                    while (line := _next_line(err, deadline, "'watch resumed' line")).startswith(
                        "transfer-cli: watch dropped"
                    ):
                        dropped.append(line)
                    resumed = f"transfer-cli: watch resumed from cursor {found.group(1)} at reconnect {len(dropped)}"
                    assert line == resumed, line
                    matches = [DROPPED.match(d) for d in dropped]
                    assert [int(m.group(2)) for m in matches if m] == list(range(1, len(dropped) + 1))
                    assert {m.group(1) for m in matches if m} <= {"UNAVAILABLE", "CANCELLED"}  # transient codes

                    after = s1.initiate_transfer(codes[1], "S2").transfer.id
                    second = _next_line(out, deadline, "event after the restart")
                    assert after in second and "REQUESTED" in second, second
                    assert proc.wait(30) == 0
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    for reader in readers:
                        reader.join(10)  # at the end of both pipes
                assert out.empty() and err.empty(), (list(out.queue), list(err.queue))
    finally:
        server.stop()


def test_cli_watch_gives_up_after_max_reconnects(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`watch --max-reconnects 3` against a node that does not answer: three progress lines, then the usual
    one-line UNAVAILABLE reason and exit status 3, as any command that finds no node."""
    args = ["--address", "127.0.0.1:1", "--pki", str(pki), "--as", "school-S2", "--attempts", "2", "--timeout", "2"]
    started = time.monotonic()
    assert main([*args, "watch", "--max-reconnects", "3", "--max-backoff", "0.05"]) == 3
    assert time.monotonic() - started < 20
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == ""
    assert len(err) == 4, err
    assert [DROPPED.match(line).groups()[:3] for line in err[:3]] == [  # type: ignore[union-attr]
        ("UNAVAILABLE", str(n), " of 3") for n in (1, 2, 3)
    ]
    assert main([*args, "get", "a" * 32]) == 3
    usual = capsys.readouterr().err.strip()
    assert err[3].startswith("transfer-cli: UNAVAILABLE: ") and err[3].split(": ")[:2] == usual.split(": ")[:2], (
        err[3],
        usual,
    )


def test_cli_watch_options_are_checked_and_permanent_errors_end_it(
    node: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-reconnects below 0 and a --max-backoff not above 0 (or not finite) are usage errors (exit 2); a
    refusal ends a watch at once with its reason and exit 1, even though it never gives up on a node that is down."""
    for option, value in (("--max-reconnects", "-1"), ("--max-reconnects", "x"), ("--max-backoff", "0"),
                          ("--max-backoff", "nan")):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main(cli(node, "school-S2", "watch", option, value))
        assert info.value.code == 2
        assert option in capsys.readouterr().err
    started = time.monotonic()
    assert main(cli(node, "school-S2", "watch", "--school", "S1", "--max-reconnects", "0")) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PERMISSION_DENIED NOT_YOUR_SCHOOL" in err[0], err


def test_cli_log_info(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """`transfer-cli log-info` prints the origin and the verifier keys GetLogInfo serves, as text and as JSON."""
    vkey = (node.pki / "log.vkey").read_text().strip()
    assert main(cli(node, "auditor", "log-info")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["origin     hocba.invalid/province/01/log", f"log vkey   {vkey}", "seal vkey  -", "quorum     0"]
    assert main(["--json", *cli(node, "school-S1", "log-info")]) == 0
    assert json.loads(capsys.readouterr().out) == {"origin": "hocba.invalid/province/01/log", "log_vkey": vkey}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """transfer-cli as a separate process, as a script would run it."""
    cmd = [sys.executable, "-m", "transfer.client.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_cli_version_is_the_installed_package_version() -> None:
    """`transfer-cli --version` prints the installed distribution's version and exits 0."""
    done = _run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"transfer-cli {importlib.metadata.version('hocba-transfer')}"


def test_cli_json_anywhere_and_refusals_as_json(node: RunningNode) -> None:
    """--json works before or after the command, and with it a refusal is one JSON object on stderr."""
    code = new_lookup_code()
    done = _run_cli(*cli(node, "school-S1", "record-register", code, new_national_id(), "primary", "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["lookup_code"] == code
    done = _run_cli(*cli(node, "school-S1", "--json", "record-get", code))
    assert done.returncode == 0 and json.loads(done.stdout)["custodian_school"] == "S1"

    done = _run_cli(*cli(node, "school-S1", "initiate", "nothex", "S2", "--json"))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    refusal = json.loads(line)
    assert refusal["code"] == "INVALID_ARGUMENT" and refusal["reason"] == "INVALID_LOOKUP_CODE"
    assert refusal["message"] and refusal["transient"] is False
    assert [v["field"] for v in refusal["field_violations"]] == ["lookup_code"]
    assert re.fullmatch(r"[0-9a-f]{32}", refusal["trace_id"]), refusal

    done = _run_cli(*cli(node, "school-S2", "--json", "reject", "a" * 32, "--reason", "x"))
    assert done.returncode == 1
    assert json.loads(done.stderr)["reason"] == "NOT_RECEIVING_SCHOOL"

    done = _run_cli("--address", node.address, "--pki", str(node.pki), "--as", "nobody", "list", "--incoming", "--json")
    assert done.returncode == 2
    assert json.loads(done.stderr)["code"] == "USAGE"


def test_cli_unavailable_as_json_names_the_request_id(node: RunningNode) -> None:
    """With --json, an unreachable node's refusal is transient and carries the request id to retry with."""
    done = _run_cli(*unreachable(node), "--json", "accept", "a" * 32, "--request-id", "b" * 32)
    assert done.returncode == 3
    refusal = json.loads(done.stderr)
    assert refusal["code"] == "UNAVAILABLE" and refusal["transient"] is True and refusal["request_id"] == "b" * 32


def test_cli_list_commands_page_by_default(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """List commands print the first 100 with a note on stderr that more exist; --limit N and --all change that."""
    admin = node.client("province-admin")
    for i in range(98):  # S1, S2, S3 exist: 101 schools in all
        admin.register_school(f"P{i:03d}", f"Trường {i}")
    assert main(cli(node, "province-admin", "school-list")) == 0
    got = capsys.readouterr()
    assert len(got.out.splitlines()) == 100
    assert got.err.strip() == (
        "transfer-cli: showing the first 100; more exist (--limit N to show more, --all for every one)"
    )
    assert main(cli(node, "province-admin", "school-list", "--all")) == 0
    got = capsys.readouterr()
    assert len(got.out.splitlines()) == 101 and got.err == ""
    assert main(cli(node, "province-admin", "school-list", "--limit", "101", "--json")) == 0
    got = capsys.readouterr()
    assert len([json.loads(line) for line in got.out.splitlines()]) == 101 and got.err == ""

    codes = [new_lookup_code() for _ in range(3)]
    school = node.client("school-S1")
    for code in codes:
        school.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    assert main(cli(node, "school-S1", "record-list", "--limit", "2")) == 0
    got = capsys.readouterr()
    assert len(got.out.splitlines()) == 2 and "more exist" in got.err
    assert main(cli(node, "school-S1", "record-list", "--limit", "3")) == 0
    got = capsys.readouterr()
    assert sorted(line.split()[1] for line in got.out.splitlines()) == sorted(codes) and got.err == ""
    with pytest.raises(SystemExit) as info:
        main(cli(node, "school-S1", "record-list", "--limit", "2", "--all"))
    assert info.value.code == 2


def test_cli_teachers_by_staff_code(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """Commands that take a teacher accept the school's staff code (GV-LAN) as well as the node's id."""
    from datetime import UTC, datetime

    from tests.staffing import YEAR
    from transfer.devpki import SigningCA

    ca = SigningCA.load(node.pki)
    admin = node.client("school-admin-S1")
    ids = {}
    for code in ("GV-LAN", "GV-HOA"):
        pem, _ = ca.teacher(code, "ecdsa", not_before=datetime(2026, 1, 1, tzinfo=UTC), write=False)
        ids[code] = admin.register_teacher(code, f"Cô {code}", [pem]).id
    assert main(cli(node, "school-admin-S1", "teacher-get", "GV-LAN")) == 0
    assert capsys.readouterr().out.startswith(f"teacher {ids['GV-LAN']} GV-LAN")
    assert main(cli(node, "province-admin", "teacher-get", "GV-HOA", "--school", "S1")) == 0
    assert ids["GV-HOA"] in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "duty-assign", f"homeroom/{YEAR}/3A", "GV-LAN")) == 0
    assert f"held by {ids['GV-LAN']}" in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "duty-list", "--teacher", "GV-LAN")) == 0
    assert f"homeroom/{YEAR}/3A" in capsys.readouterr().out
    depart = ["depart", "GV-LAN", "--reason", "retirement", "--effective", "2026-11-23", "--replacement", "GV-HOA"]
    assert main(cli(node, "school-admin-S1", *depart)) == 0
    assert f"teacher {ids['GV-LAN']} retirement" in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "handoff-list", "--teacher", "GV-LAN")) == 0
    assert f"-> {ids['GV-HOA']}" in capsys.readouterr().out
    assert main(cli(node, "school-admin-S1", "duty-list", "--teacher", ids["GV-HOA"])) == 0  # ids still work
    assert f"homeroom/{YEAR}/3A" in capsys.readouterr().out

    assert main(cli(node, "school-admin-S1", "teacher-get", "GV-NOBODY")) == 1
    assert "NOT_FOUND TEACHER_NOT_FOUND" in capsys.readouterr().err
    assert main(cli(node, "school-admin-S2", "--json", "task-list", "GV-LAN")) == 1  # codes are per school
    assert json.loads(capsys.readouterr().err)["reason"] == "TEACHER_NOT_FOUND"


def test_cli_spells_levels_and_reasons_as_it_reads_them(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    """A level or departure reason prints the way the command line takes it (lower-secondary, not lower_secondary)."""
    from transfer.client.cli import LEVELS, REASONS, fmt_handoff
    from transfer.v1 import staff_pb2

    code = new_lookup_code()
    assert main(cli(node, "school-S1", "record-register", code, new_national_id(), "lower-secondary")) == 0
    assert f"record {code} lower-secondary " in capsys.readouterr().out
    assert main(cli(node, "school-S1", "record-list")) == 0
    assert "lower-secondary" in capsys.readouterr().out
    assert "lower-secondary" in LEVELS
    line = fmt_handoff(staff_pb2.Handoff(id="h", teacher_id="t", reason=staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE))
    assert " maternity-leave " in line and "maternity-leave" in REASONS


def test_cli_usage_errors_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """With --json anywhere on the line, a line argparse refuses is one JSON object on stderr (USAGE, exit 2) too."""
    for line in (
        ["--json", "record-list", "--limit", "0"],
        ["record-register", "abc", "123", "middle", "--json"],
        ["--json", "no-such-command"],
        ["school-list", "--limit", "5", "--all", "--json"],
    ):
        assert main(line) == 2, line
        got = capsys.readouterr()
        refusal = json.loads(got.err)
        assert got.out == "" and refusal["code"] == "USAGE" and refusal["message"].startswith("transfer-cli"), got.err
    assert main(["--json", "record-register", "abc", "123", "middle"]) == 2
    assert "invalid choice: 'middle'" in json.loads(capsys.readouterr().err)["message"]
    with pytest.raises(SystemExit) as info:  # without --json: argparse's usage line and message, as before
        main(["record-list", "--limit", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: transfer-cli record-list") and "argument --limit: must be above 0" in err


def test_cli_list_takes_a_state_as_a_transfer_line_prints_it() -> None:
    """`list --state` reads the state word of a transfer's line (ACCEPTED) as well as its lower-case spelling."""
    from transfer.client.cli import STATES, build_parser, fmt_transfer
    from transfer.v1 import transfers_pb2

    for name, number in STATES.items():
        printed = fmt_transfer(transfers_pb2.Transfer(id="t", state=number)).split()[2]
        assert printed == name.upper()
        ns = build_parser().parse_args(["list", "--incoming", "--state", printed, "--state", name])
        assert ns.state == [name, name]


def test_cli_signs_and_hands_off_by_staff_code(
    node: RunningNode, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """task-list, `depart --duty KEY=CODE` and page-sign take staff codes, looked up in the caller's school."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization

    from tests.staffing import YEAR
    from transfer.devpki import SigningCA

    ca = SigningCA.load(node.pki)
    admin = node.client("school-admin-S1")
    ids = {}
    for code in ("GV-LAN", "GV-HOA"):
        pem, key = ca.teacher(code, "ecdsa", not_before=datetime(2026, 1, 1, tzinfo=UTC), write=False)
        pkcs8 = serialization.PrivateFormat.PKCS8
        (tmp_path / f"{code}.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
        )
        ids[code] = admin.register_teacher(code, f"Cô {code}", [pem]).id
    duty = f"homeroom/{YEAR}/3A"
    assert main(cli(node, "school-admin-S1", "duty-assign", duty, "GV-LAN")) == 0
    capsys.readouterr()
    lookup = new_lookup_code()
    assert main(cli(node, "school-S1", "record-register", lookup, new_national_id(), "primary")) == 0
    capsys.readouterr()
    (tmp_path / "page.pdf").write_bytes(b"%PDF-1.7 lop 3A")
    add = ["--json", "page-add", lookup, YEAR, "3", "3A", str(tmp_path / "page.pdf"), "--require", "homeroom"]
    assert main(cli(node, "school-S1", *add)) == 0
    page_id = json.loads(capsys.readouterr().out)["id"]
    assert main(cli(node, "school-S1", "task-list", "GV-LAN")) == 0
    assert f"owed by {ids['GV-LAN']}" in capsys.readouterr().out

    depart = ["depart", "GV-LAN", "--reason", "resignation", "--effective", "2026-11-23", "--duty", f"{duty}=GV-HOA"]
    assert main(cli(node, "school-admin-S1", *depart)) == 0
    assert "moved 1 task" in capsys.readouterr().out
    assert main(cli(node, "school-S1", "task-list", "GV-HOA")) == 0
    assert page_id in capsys.readouterr().out
    sign = ["page-sign", page_id, "homeroom", "GV-HOA", "--key", str(tmp_path / "GV-HOA.key")]
    assert main(cli(node, "school-S1", *sign)) == 0
    assert "1/1 signed" in capsys.readouterr().out

"""docs/client.md matches the client: every public method, the RPC it calls, the reasons it names, every proto."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from tests.support import RunningNode, new_lookup_code, new_national_id
from tests.test_docs import ROOT, _codes_in_code, _reasons_in_code
from transfer.client import client as client_module
from transfer.client.client import ClientTls, TransferClient

DOC = ROOT / "docs" / "client.md"
CLIENT = ROOT / "transfer" / "client" / "client.py"
DOCUMENTED_CLASSES = (TransferClient, ClientTls)
# SigningTrust.accept re-raises these FAILED_PRECONDITION refusals of a certificate's chain as INVALID_ARGUMENT
# (`_bad_cert(exc.reason, ...)`: at registration the certificate is the request's input), out of the AST's sight.
REREGISTERED_AS_INVALID = ("CERTIFICATE_NOT_VALID", "UNTRUSTED_CERTIFICATE")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _public_methods(cls: type) -> list[str]:
    """The public methods, class and static methods the class itself defines (properties excluded)."""
    return sorted(
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and (isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value))
    )


def _sections(doc: str) -> dict[str, str]:
    """Each `### `name`` / `#### `name`` heading's name -> its text, up to the next heading."""
    sections: dict[str, str] = {}
    parts = re.split(r"^(#{2,4}) (.*)$", doc, flags=re.M)
    for i in range(1, len(parts) - 2, 3):
        named = re.fullmatch(r"`([A-Za-z_]+)`", parts[i + 1].strip())
        if named:
            sections[named.group(1)] = parts[i + 2]
    return sections


def _services() -> dict[str, dict[str, str]]:
    """Each transfer.v1 proto file's name -> {method name: "Service.Method"} of the services it defines."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted((ROOT / "proto" / "transfer" / "v1").glob("*.proto")):
        module = importlib.import_module(f"transfer.v1.{path.stem}_pb2")
        found[path.name] = {
            method.name: f"{service.name}.{method.name}"
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods
        }
    return found


def _rpcs_called() -> dict[str, set[str]]:
    """Each public method of TransferClient -> the "Service.Method" RPCs its code calls (through other methods too)."""
    rpc_of = {name: full for methods in _services().values() for name, full in methods.items()}
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TransferClient")
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for fn in cls.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        attrs = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
        direct[fn.name] = {rpc_of[a] for a in attrs if a in rpc_of}
        calls[fn.name] = attrs

    def reach(name: str, seen: set[str]) -> set[str]:
        seen.add(name)
        out = set(direct[name])
        for other in calls[name]:
            if other in direct and other not in seen and not other.startswith("_"):
                out |= reach(other, seen)
        return out

    return {name: reach(name, set()) for name in direct if not name.startswith("_")}


def _table_rows(doc: str) -> Iterator[tuple[str, list[str]]]:
    """(gRPC code, reasons) of each row of the doc's `| code | reason | ... |` tables; a blank code repeats the last."""
    in_table, current = False, ""
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            in_table = False
            continue
        if cells[:2] == ["code", "reason"]:
            in_table, current = True, ""
            continue
        if not in_table or cells[0].startswith("---"):
            continue
        current = cells[0] or current
        yield current, re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1])


def _client_reasons() -> dict[str, str]:
    """Reasons the client raises itself (an error class built with a literal code and reason) -> their code."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(CLIENT.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            code, reason = node.args[0], node.args[1]
            if (
                isinstance(code, ast.Attribute)
                and isinstance(code.value, ast.Attribute)
                and code.value.attr == "StatusCode"
                and isinstance(reason, ast.Constant)
                and isinstance(reason.value, str)
            ):
                found[reason.value] = code.attr
    return found


def test_every_public_method_has_a_section() -> None:
    """Each public method of TransferClient and ClientTls has a heading of its own in docs/client.md."""
    sections = _sections(_doc())
    methods = [m for cls in DOCUMENTED_CLASSES for m in _public_methods(cls)]
    assert len(methods) > 40
    assert {"TransferClient", "ClientTls", "new_request_id"} <= set(sections)
    assert [m for m in methods if m not in sections] == []


def test_every_public_method_has_a_docstring() -> None:
    """Each public method of TransferClient and ClientTls says what it does in a docstring."""
    missing = [
        f"{cls.__name__}.{m}"
        for cls in DOCUMENTED_CLASSES
        for m in _public_methods(cls)
        if not inspect.getdoc(getattr(cls, m))
    ]
    assert missing == []


def test_each_section_names_the_rpcs_its_method_calls() -> None:
    """A method's section names exactly the RPCs (`Service.Method`) its code calls; methods making no call name none."""
    sections = _sections(_doc())
    called = _rpcs_called()
    assert called["initiate_transfer"] == {"TransferService.InitiateTransfer"}
    assert called["iter_schools"] == {"SchoolDirectoryService.ListSchools"}
    wrong = {
        name: (sorted(rpcs), sorted(named))
        for name, rpcs in called.items()
        if rpcs != (named := set(re.findall(r"`([A-Z]\w*Service\.[A-Z]\w*)`", sections[name])))
    }
    assert wrong == {}


def test_every_reason_in_a_table_is_sent_with_that_code() -> None:
    """Each reason in docs/client.md's tables is one the node (or the client itself) refuses with, under that code."""
    codes = {reason: {code for code, _ in uses} for reason, uses in _codes_in_code().items()}
    for reason, code in _client_reasons().items():
        codes.setdefault(reason, set()).add(code)
    assert "_bad_cert(exc.reason, exc.message)" in (ROOT / "transfer" / "domain" / "signatures.py").read_text()
    for reason in REREGISTERED_AS_INVALID:
        codes[reason].add("INVALID_ARGUMENT")
    rows = list(_table_rows(_doc()))
    assert len(rows) > 100
    wrong = sorted(
        f"{code} {reason}" for code, reasons in rows for reason in reasons if code not in codes.get(reason, set())
    )
    assert wrong == []


def test_every_upper_snake_name_exists() -> None:
    """Every `UPPER_SNAKE` name in docs/client.md is a reason or precondition type in the code, a gRPC code or a proto enum value."""
    known = set(_codes_in_code()) | _reasons_in_code() | set(_client_reasons()) | {c.name for c in grpc.StatusCode}
    known |= {name for name in vars(client_module) if name.isupper()}  # the client's constants
    for path in (ROOT / "proto" / "transfer" / "v1").glob("*.proto"):
        module = importlib.import_module(f"transfer.v1.{path.stem}_pb2")
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            known |= set(enum.values_by_name)
    named = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", _doc()))
    assert "TRANSFER_ALREADY_OPEN" in named
    assert sorted(named - known) == []


def test_every_proto_file_is_listed_with_its_services() -> None:
    """docs/client.md's table of protos has a row for each file in proto/ (and no other), naming the services it defines."""
    rows = dict(re.findall(r"^\| `(proto/[\w/]+\.proto)` \| (.*) \|$", _doc(), re.M))
    files = {f"proto/transfer/v1/{name}": methods for name, methods in _services().items()}
    assert set(rows) == set(files)
    for path, methods in files.items():
        services = {full.split(".")[0] for full in methods.values()}
        assert all(f"`{s}`" in rows[path] for s in services), path


def test_each_docstring_names_the_rpcs_its_method_calls() -> None:
    """A client method's docstring names the RPC it calls (e.g. InitiateTransfer), as its section in the doc does."""
    wrong = {
        name: sorted(rpcs)
        for name, rpcs in _rpcs_called().items()
        if not all(
            re.search(rf"\b{rpc.split('.')[1]}\b", inspect.getdoc(getattr(TransferClient, name)) or "") for rpc in rpcs
        )
    }
    assert wrong == {}


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_of_the_doc_leads_to_a_heading() -> None:
    """Each `file.md#anchor` (or `#anchor`) link in docs/client.md names a heading of that file."""
    doc = _doc()
    links = re.findall(r"\]\(([\w./]*)#([^)]+)\)", doc)
    assert len(links) > 5
    missing = []
    for target, anchor in links:
        text = doc if not target else (DOC.parent / target).read_text(encoding="utf-8")
        if anchor not in {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}:
            missing.append(f"{target}#{anchor}")
    assert missing == []


def _example(title: str) -> str:
    """The first Python code block under the doc's heading `title`."""
    section = re.split(rf"^#+ {re.escape(title)}\n", _doc(), maxsplit=1, flags=re.M)[1].split("\n#", 1)[0]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_transfer_and_verification_examples_run(node: RunningNode, tmp_path: Path, monkeypatch: Any) -> None:
    """The doc's transfer example (initiate, list incoming, accept) and its receipt and bundle checks run on a real node."""
    from transfer.v1 import common_pb2, transfers_pb2

    (tmp_path / "example").mkdir()
    (tmp_path / "example" / "pki").symlink_to(node.pki)
    monkeypatch.chdir(tmp_path / "example")  # the examples read the dev PKI from ./pki
    lookup_code = new_lookup_code()
    node.client("school-S1").register_record(lookup_code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    kept: list[Any] = []
    stored: list[str] = []
    ns: dict[str, Any] = {"NODE": node.address, "lookup_code": lookup_code, "keep": kept.append}
    ns["acceptable"] = lambda t: t.lookup_code == lookup_code
    try:
        exec(_example("A transfer between two schools"), ns)  # the doc's own code
        ns.update(client=ns["sender"], store_with_record=stored.append, LOG_ORIGIN="hocba.invalid/province/01/log")
        ns["LOG_VKEY"] = (node.pki / "log.vkey").read_text().strip()
        exec(_example("Verifying receipts and proof bundles"), ns)
        accepted = ns["sender"].get_transfer(ns["transfer_id"])
    finally:
        for name in ("sender", "receiver"):
            if name in ns:
                ns[name].close()
    assert accepted.state == transfers_pb2.TRANSFER_STATE_ACCEPTED
    assert [r.index for r in kept] == [ns["change"].receipt.index]
    assert ns["checked"].bundle.index == ns["change"].receipt.index and stored


def test_the_handoff_example_runs(node: RunningNode, tmp_path: Path, monkeypatch: Any) -> None:
    """The doc's handoff example (two teachers, a duty, a maternity leave handing it over) runs on a real node."""
    from transfer.devpki import SigningCA

    (tmp_path / "example").mkdir()
    (tmp_path / "example" / "pki").symlink_to(node.pki)
    monkeypatch.chdir(tmp_path / "example")
    ca = SigningCA.load(node.pki)
    valid = {"not_before": datetime(2020, 1, 1, tzinfo=UTC), "not_after": datetime(2100, 1, 1, tzinfo=UTC)}
    ns: dict[str, Any] = {"NODE": node.address}
    ns["lan_cert_pem"] = ca.teacher("lan", **valid, write=False)[0]  # type: ignore[arg-type]
    ns["binh_cert_pem"] = ca.teacher("binh", **valid, write=False)[0]  # type: ignore[arg-type]
    try:
        exec(_example("A teacher's handoff"), ns)  # the doc's own code
    finally:
        if "admin" in ns:
            ns["admin"].close()
    assert ns["handoff"].teacher_id == ns["lan"].id and ns["receipt"].signed_entry


def test_the_signing_example_runs(node: RunningNode) -> None:
    """The doc's signing example signs every task a teacher owes (the page is then SIGNED); its paging example lists."""
    from cryptography.hazmat.primitives import serialization

    from transfer.devpki import SigningCA
    from transfer.v1 import common_pb2, pages_pb2

    valid = {"not_before": datetime(2020, 1, 1, tzinfo=UTC), "not_after": datetime(2100, 1, 1, tzinfo=UTC)}
    pem, key = SigningCA.load(node.pki).teacher("hoa", **valid, write=False)  # type: ignore[arg-type]
    admin, client = node.client("school-admin-S1"), node.client("school-S1")
    teacher = admin.register_teacher("GV-HOA", "Lê Thị Hoa", [pem])
    admin.assign_duty((pages_pb2.SIGNER_ROLE_HOMEROOM, "2025-2026", "1A", ""), teacher.id)
    lookup_code = new_lookup_code()
    client.register_record(lookup_code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    added = client.add_page(
        lookup_code, "2025-2026", 1, "1A", b"%PDF-1.7 hoc ba", [(pages_pb2.SIGNER_ROLE_HOMEROOM, "")]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    exec(_example("Signing a page"), {"client": client, "teacher_id": teacher.id, "key_pem": key_pem})
    assert client.get_page(added.page.id).state == pages_pb2.PAGE_STATE_SIGNED
    handled: list[Any] = []
    exec(_example("Paging"), {"client": client, "handle": handled.extend})  # the paging example too
    assert [r.lookup_code for r in handled] == [lookup_code]

"""The documentation matches the code: every error reason, config key and make target it names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from transfer.server.config import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
ERROR_TYPES = {
    "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied", "FailedPrecondition",
    "Unauthenticated", "Unavailable", "FieldViolation", "PreconditionViolation", "OutOfRange", "DataLoss",
}  # fmt: skip


def _reasons_in_code() -> set[str]:
    """Every UPPER_SNAKE literal given as a reason (or precondition type) in the service's code."""
    found: set[str] = set()
    for path in [*(ROOT / "transfer").rglob("*.py")]:
        if "v1" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):  # defaults such as required_reason="REQUIRED"
                named = list(zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True))
                named += list(
                    zip(
                        node.args.args[len(node.args.args) - len(node.args.defaults) :], node.args.defaults, strict=True
                    )
                )
                for arg, default in named:
                    if (
                        arg.arg in ("required_reason", "reason")
                        and isinstance(default, ast.Constant)
                        and isinstance(default.value, str)
                        and re.fullmatch(r"[A-Z_]+", default.value)
                    ):
                        found.add(default.value)
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = list(node.args)
            if name in ERROR_TYPES:
                candidates = args[:1] if name not in {"FieldViolation"} else args[2:3]
            elif name == "add" and len(args) == 3:  # Violations.add(field, description, reason)
                candidates = args[2:3]
            elif name == "_require":  # _require(condition, reason, message)
                candidates = args[1:2]
            elif name == "_bad":  # _bad(field, message, reason)
                candidates = args[2:3]
            elif name == "_bad_cert":  # _bad_cert(reason, message)
                candidates = args[:1]
            else:
                candidates = []
            candidates += [k.value for k in node.keywords if k.arg in {"reason", "required_reason"}]
            candidates = [c for a in candidates for c in ([a.body, a.orelse] if isinstance(a, ast.IfExp) else [a])]
            for arg in candidates:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and re.fullmatch(r"[A-Z_]+", arg.value):
                    found.add(arg.value)
    return found


def test_every_error_reason_is_documented() -> None:
    """docs/protocol.md lists every reason the code can send."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", doc))
    reasons = _reasons_in_code()
    assert len(reasons) > 30
    assert reasons - documented == set()


# The gRPC code each way of refusing gives (transfer/server/errors.py maps the classes).
_CODE_OF_CALL = {
    "InvalidArgument": "INVALID_ARGUMENT", "NotFound": "NOT_FOUND", "AlreadyExists": "ALREADY_EXISTS",
    "PermissionDenied": "PERMISSION_DENIED", "FailedPrecondition": "FAILED_PRECONDITION",
    "Unauthenticated": "UNAUTHENTICATED", "Unavailable": "UNAVAILABLE", "OutOfRange": "OUT_OF_RANGE",
    "DataLoss": "DATA_LOSS", "PackageError": "INVALID_ARGUMENT", "ResourceExhausted": "RESOURCE_EXHAUSTED",
}  # fmt: skip
# helper -> (position of its reason argument, the code of what it raises)
_HELPERS = {"add": (2, "INVALID_ARGUMENT"), "_require": (1, "PERMISSION_DENIED"), "_bad": (2, "INVALID_ARGUMENT"),
            "_bad_cert": (0, "INVALID_ARGUMENT")}  # fmt: skip


def _literals(node: ast.expr) -> list[str]:
    branches = [node.body, node.orelse] if isinstance(node, ast.IfExp) else [node]
    return [
        b.value
        for b in branches
        if isinstance(b, ast.Constant) and isinstance(b.value, str) and re.fullmatch(r"[A-Z][A-Z_]+", b.value)
    ]


def _codes_in_code() -> dict[str, set[tuple[str, str]]]:
    """Each reason the node (domain, server, storage) refuses with -> {(gRPC code, file:line)}."""
    found: dict[str, set[tuple[str, str]]] = {}
    paths = [p for p in (ROOT / "transfer").rglob("*.py") if not {"v1", "client"} & set(p.relative_to(ROOT).parts)]
    for path in [*paths, *(ROOT / "storage").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.FunctionDef):  # reason="..." defaults of helpers that add field violations
                args = node.args
                named = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
                named += list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True))
                for arg, default in named:
                    if arg.arg in ("reason", "required_reason") and default is not None:
                        for r in _literals(default):
                            found.setdefault(r, set()).add(("INVALID_ARGUMENT", where))
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            candidates = [k.value for k in node.keywords if k.arg == "required_reason"]
            code = "INVALID_ARGUMENT"
            if name in _CODE_OF_CALL:
                code = _CODE_OF_CALL[name]
                candidates += node.args[:1] + [k.value for k in node.keywords if k.arg == "reason"]
            elif name in _HELPERS and (name != "add" or len(node.args) == 3):
                index, code = _HELPERS[name]
                candidates += node.args[index : index + 1]
            for arg in candidates:
                for r in _literals(arg):
                    found.setdefault(r, set()).add((code, where))
    return found


def _documented_codes() -> dict[str, set[str]]:
    """Each reason in docs/protocol.md's error tables -> the gRPC codes of its rows ("*": a row with none)."""
    codes = set(_CODE_OF_CALL.values())
    documented: dict[str, set[str]] = {}
    current = ""
    for line in (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 3 or cells[0] == "code" or cells[0].startswith("---"):
            continue
        current = cells[0] or current
        row = {c for c in codes if re.search(rf"\b{c}\b", current)} or {"*"}
        for reason in re.findall(r"`([A-Z][A-Z_]+)`", cells[1]):
            documented.setdefault(reason, set()).update(row)
    return documented


def test_every_reason_is_documented_with_its_code() -> None:
    """Each reason the node refuses with is in a row of docs/protocol.md's tables under the code it is sent with."""
    documented = _documented_codes()
    wrong = sorted(
        f"{reason} {code} ({where}) documented as {sorted(documented.get(reason, set())) or 'nothing'}"
        for reason, uses in _codes_in_code().items()
        for code, where in uses
        if not {code, "*"} & documented.get(reason, set())
    )
    assert wrong == []


def test_every_documented_reason_exists() -> None:
    """Every reason in docs/protocol.md's error tables is one the node can still refuse with."""
    assert set(_documented_codes()) - set(_codes_in_code()) == set()


def test_every_config_key_is_documented() -> None:
    """docs/operations.md's table has a row for each configuration key, and no others."""
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", doc, re.M))
    rows |= {f"tls.{k}" for k in ("ca_file", "cert_file", "key_file")} if "`tls.ca_file`, " in doc else set()
    expected = {f"{section}.{key}" for section, keys in SCHEMA.items() for key in keys}
    assert rows == expected


def test_readme_quick_start_targets_exist() -> None:
    """The README's two quick-start commands are Makefile targets, and CI runs `make test`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (outside code blocks): lower case, punctuation dropped,
    spaces as hyphens, a repeated heading numbered -1, -2, …"""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.*)$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_every_link_between_the_docs_leads_somewhere() -> None:
    """Each relative link in README.md and docs/*.md names a file that exists and, with `#anchor`, a heading of it:
    moving or renaming a section cannot leave a link behind."""
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\((?!https?:|mailto:)([^)#\s]*)(?:#([^)\s]+))?\)", text):
            path = (doc.parent / target).resolve() if target else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{doc.name}: {target}#{anchor}")
    assert broken == []

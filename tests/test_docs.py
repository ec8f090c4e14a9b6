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

"""The container image's inputs: the hash locks agree with constraints.txt and the Dockerfile installs from them."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.support import ROOT

LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\$")
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}( \\)?$")


def read_lock(path: Path) -> dict[str, tuple[str, int]]:
    """Each pinned name of a pip-compile --generate-hashes file, with its version and number of hashes."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            assert current not in pins, f"{path.name}: {current} twice"
            pins[current] = (match[2], 0)
        else:
            assert HASH.match(line) and current, f"{path.name}: not a pin or a sha256 hash: {line!r}"
            pins[current] = (pins[current][0], pins[current][1] + 1)
    return pins


def read_constraints() -> dict[str, str]:
    """constraints.txt as name -> version."""
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def server_closure() -> set[str]:
    """Every distribution `hocba-transfer[server]` needs here (Linux, this CPython), from the installed metadata."""
    names: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [("hocba-transfer", frozenset({"server"}))]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras or {""})
            key = canonicalize_name(req.name)
            if wanted and key != "hocba-transfer":  # the dev extra names the project itself
                names.add(key)
                todo.append((key, frozenset(req.extras)))
    return names


def test_server_lock_pins_the_constraints_with_hashes() -> None:
    """requirements/server.lock pins each package as constraints.txt does, each with at least one sha256 hash."""
    lock = read_lock(LOCKS / "server.lock")
    constraints = read_constraints()
    assert lock
    for name, (version, hashes) in lock.items():
        assert constraints.get(name) == version, (
            f"{name}: server.lock {version}, constraints.txt {constraints.get(name)}"
        )
        assert hashes >= 1, f"{name}: no hash"


def test_server_lock_is_exactly_the_server_extra() -> None:
    """The lock holds the server extra's whole dependency closure and nothing else (no dev tool in the image)."""
    assert set(read_lock(LOCKS / "server.lock")) == server_closure()


def test_build_lock_satisfies_the_build_system() -> None:
    """requirements/build.lock pins, with hashes, a setuptools that pyproject.toml's build-system accepts."""
    lock = read_lock(LOCKS / "build.lock")
    assert set(lock) == {"setuptools"}
    version, hashes = lock["setuptools"]
    assert hashes >= 1
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    (setuptools,) = (Requirement(r) for r in requires if canonicalize_name(Requirement(r).name) == "setuptools")
    assert SpecifierSet(str(setuptools.specifier)).contains(version)


def test_dockerfile_installs_from_the_locks_into_a_runtime_without_installers() -> None:
    """The builder installs only hash-checked locked wheels; the runtime stage gets python3, the venv and uid 10001."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    builder, runtime = text.split("\nFROM ${BASE_IMAGE}\n")
    assert "ARG BASE_IMAGE=" in text.split("\nFROM ")[0]
    assert "FROM ${BASE_IMAGE} AS builder" in builder
    assert "--require-hashes --no-deps --only-binary :all:" in builder
    assert "-r requirements/build.lock -r requirements/server.lock" in builder
    assert "--no-deps --no-index --no-build-isolation ." in builder
    assert "pip uninstall --quiet --yes setuptools pip" in builder
    assert "install -y --no-install-recommends python3 ca-certificates \\" in runtime
    assert "python3-venv" not in runtime and " pip " not in runtime
    assert "rm -rf /var/lib/apt/lists/*" in runtime
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "--uid 10001" in runtime and "USER 10001:10001" in runtime
    assert 'CMD ["/opt/venv/bin/transfer-healthcheck", "--config", "/etc/hocba/node.toml"]' in runtime
    assert 'ENTRYPOINT ["/opt/venv/bin/transfer-server", "--config", "/etc/hocba/node.toml"]' in runtime

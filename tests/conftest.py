"""Fixtures: a dev PKI, a database per test on each engine, and running nodes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import (
    FakeClock,
    RunningNode,
    create_pg_database,
    drop_pg_database,
    load_config,
    postgres_base,
    running_node,
    write_config,
)
from transfer.client import TransferClient
from transfer.devpki import SigningCA, make_dev_pki

SCHOOLS = ["S1", "S2", "S3"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-postgres",
        action="store_true",
        help="fail (instead of skipping) PostgreSQL cases when TRANSFER_TEST_PG is unset",
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node's development PKI: CA, node, admins and schools S1-S3 (+ S9, not registered)."""
    out = tmp_path_factory.mktemp("pki")
    make_dev_pki(out, "01", [*SCHOOLS, "S9"])
    # Teachers' certificates must be valid at the fake clock's time, whatever today is (the model tests
    # move the clock on by years when they search long).
    SigningCA(out, not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2100, 1, 1, tzinfo=UTC))
    return out


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PKI from a CA the node does not trust, with the same names."""
    out = tmp_path_factory.mktemp("rogue-pki")
    make_dev_pki(out, "01", SCHOOLS)
    SigningCA(out, not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2040, 1, 1, tzinfo=UTC))
    return out


@pytest.fixture(scope="session")
def pki79(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Province 79's development PKI, for federation tests: CA, node, admins, schools D1-D2 and a teachers'
    signing CA valid 2020-2040."""
    out = tmp_path_factory.mktemp("pki79")
    make_dev_pki(out, "79", ["D1", "D2"])
    SigningCA(out, not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2040, 1, 1, tzinfo=UTC))
    return out


@pytest.fixture(scope="session")
def signing_bundle(tmp_path_factory: pytest.TempPathFactory, pki: Path, pki79: Path) -> Path:
    """Both provinces' teacher CAs: each node trusts the signatures of the other's teachers.

    Made once a session from this file's pki79: a module with a pki79 of its own defines its own bundle."""
    out = tmp_path_factory.mktemp("bundle") / "signing-cas.pem"
    out.write_bytes((pki / "signing-ca.pem").read_bytes() + (pki79 / "signing-ca.pem").read_bytes())
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
        return
    base = postgres_base(request)
    url = create_pg_database(base)
    try:
        yield url
    finally:
        drop_pg_database(base, url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(tmp_path: Path, pki: Path, database_url: str, clock: FakeClock) -> Iterator[RunningNode]:
    """A running node (in-process, fake clock) with schools S1-S3 registered."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    with running_node(load_config(path), pki, clock, path) as handle:
        admin = handle.client("province-admin")
        for code in SCHOOLS:
            admin.register_school(code, f"Trường {code}")
        yield handle


@pytest.fixture
def admin(node: RunningNode) -> TransferClient:
    return node.client("province-admin")


@pytest.fixture
def s1(node: RunningNode) -> TransferClient:
    return node.client("school-S1")


@pytest.fixture
def s2(node: RunningNode) -> TransferClient:
    return node.client("school-S2")


@pytest.fixture
def s3(node: RunningNode) -> TransferClient:
    return node.client("school-S3")

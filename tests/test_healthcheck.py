"""`transfer-healthcheck`, the container's health check: it reaches the node where it listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FakeClock, load_config, running_node, write_config
from transfer.server.healthcheck import main as healthcheck_main
from transfer.server.healthcheck import target


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_healthcheck_reports_a_serving_node_on_ipv4_and_ipv6_loopback(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node listening on 127.0.0.1 or on [::1]: the health check finds it SERVING and exits 0."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, listen=listen)
    with running_node(load_config(path), pki, clock, path):
        assert healthcheck_main(["--config", str(path)]) == 0
        assert capsys.readouterr().out.strip() == "SERVING"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_healthcheck_asks_for_liveness_readiness_or_a_service(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--service liveness`, `readiness` and a service's full name are each SERVING on a healthy node
    (exit 0); a name the node does not serve is unhealthy (exit 1, NOT_FOUND in one line)."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    with running_node(load_config(path), pki, clock, path):
        for service in ("liveness", "readiness", "transfer.v1.TransferService"):
            assert healthcheck_main(["--config", str(path), "--service", service]) == 0, service
            assert capsys.readouterr().out.strip() == "SERVING"
        assert healthcheck_main(["--config", str(path), "--service", "no-such-service"]) == 1
        assert capsys.readouterr().err.startswith("unhealthy: NOT_FOUND")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_healthcheck_of_a_stopped_node_is_unhealthy(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once the node has stopped, the health check says unhealthy in one line and exits 1."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    with running_node(load_config(path), pki, clock, path):
        pass
    assert healthcheck_main(["--config", str(path), "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith("unhealthy: ")


def test_the_address_asked_is_where_the_node_listens(tmp_path: Path) -> None:
    """Loopback for a node listening on every address, else the address it listens on; the port file for port 0."""
    port_file = tmp_path / "node.port"
    port_file.write_text("4321\n")
    assert target("0.0.0.0:50051", None) == "127.0.0.1:50051"
    assert target("[::]:50051", None) == "[::1]:50051"
    assert target("[::1]:0", port_file) == "[::1]:4321"
    assert target("10.0.0.5:50051", None) == "10.0.0.5:50051"

"""What an integrator installs: the client without the server's dependencies, with its type information."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.support import ROOT

SERVER_ONLY = ("sqlalchemy", "alembic", "psycopg", "holidays", "prometheus_client", "grpc_health", "grpc_reflection")

# Run in a fresh interpreter: any import of a server-only module fails, as in an environment without them.
BLOCKED = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (server-only, blocked)")
        return None
sys.meta_path.insert(0, Absent())
"""


def test_client_imports_without_the_server_dependencies() -> None:
    """transfer.client, transfer-cli, transfer-verify-receipt and transfer-audit load with no server-only module."""
    code = BLOCKED + (
        "import transfer.client, transfer.client.cli, transfer.client.verifyreceipt, transfer.auditor\n"
        "sys.exit(transfer.client.cli.main(['--version']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("transfer-cli ")


def test_package_metadata_keeps_the_server_in_an_extra() -> None:
    """The base install requires only the client's libraries; `server` holds the rest, `dev` pulls `server`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in project["dependencies"]}
    assert base == {"grpcio", "grpcio-status", "protobuf", "cryptography", "tenacity"}
    server = " ".join(project["optional-dependencies"]["server"]).lower()
    assert all(name.replace("_", "-") in server for name in ("sqlalchemy", "alembic", "psycopg", "holidays"))
    assert "hocba-transfer[server]" in project["optional-dependencies"]["dev"]
    assert (ROOT / "transfer" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "py.typed" in package_data["package-data"]["transfer"]


def test_a_server_command_without_the_extra_names_it() -> None:
    """A client-only install that loads the node is told to install the `server` extra."""
    code = BLOCKED + "import transfer.server.app\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 1
    assert "pip install 'hocba-transfer[server]'" in done.stderr.splitlines()[-1], done.stderr


def test_the_server_and_the_cli_say_the_same_version() -> None:
    """transfer-server --version names the version transfer-cli --version and the package metadata give."""
    said = {}
    for module in ("transfer.server", "transfer.client"):
        done = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=ROOT, check=False
        )
        assert done.returncode == 0, done.stderr
        said[module] = done.stdout.split()[-1]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert said == {"transfer.server": project["version"], "transfer.client": project["version"]}

"""The `server` extra: what the node's packages need beyond the client's install.

`pip install hocba-transfer` is the client; the node's packages (transfer.server, storage) check on import
that the `server` extra is installed, so a client-only install that runs `transfer-server` is told what to
install instead of meeting a bare "No module named 'sqlalchemy'" deep in a traceback.
"""

from __future__ import annotations

import importlib.util

SERVER_MODULES = ("sqlalchemy", "alembic", "psycopg", "prometheus_client", "holidays", "grpc_health", "grpc_reflection")


def _present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a finder that refuses the name outright
        return False


def require_server_extra(package: str) -> None:
    """Raise ModuleNotFoundError naming the extra when a module of the `server` extra is missing."""
    missing = [name for name in SERVER_MODULES if not _present(name)]
    if missing:
        raise ModuleNotFoundError(
            f"{package} needs the node's dependencies ({', '.join(missing)} missing): "
            "pip install 'hocba-transfer[server]'",
            name=missing[0],
        )

"""Run a node: python -m transfer.server --config node.toml"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from transfer import __version__
from transfer.server import logs
from transfer.server.app import Node, StartRefused, checkpoint_file_problem, load_log_keys, server_tls
from transfer.server.config import Config, ConfigError, load, unused_environment
from transfer.server.limits import raise_open_file_limit

log = logging.getLogger("transfer.node")


async def _reload(node: Node, path: Path | None) -> None:
    """SIGHUP: the configuration file read again, its TLS part put in service (Node.reload_tls)."""
    if node.certificates is None:
        log.warning("SIGHUP during start-up ignored: send it again once the node has started")
        return
    try:
        config: Config | None = load(path)
    except ConfigError as exc:
        log.error("TLS reload refused, still serving with the certificates loaded before: configuration error: %s", exc,
                  extra={"reason": "TLS_RELOAD_REFUSED"})  # fmt: skip
        return
    await node.reload_tls(config)


async def _serve(node: Node, path: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    def hangup() -> None:
        task = loop.create_task(_reload(node, path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await node.start()
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    await asyncio.gather(*reloads, return_exceptions=True)
    await node.stop()


_UNUSED = (
    "environment variable {name} names no configuration section and is ignored "
    "(TRANSFER_<SECTION>_<KEY>: docs/operations.md, Configuration)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-server", description="Run a school-record transfer node.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="TOML configuration (environment variables override it)")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument(
        "--accept-missing-checkpoint-file",
        action="store_true",
        help="start, this once, although log.latest_checkpoint_file is missing and the database holds signed "
        "checkpoints (after checking the database: docs/operations.md, Backups and restores)",
    )
    ns = parser.parse_args(argv)
    try:
        config = load(ns.config)
    except ConfigError as exc:
        print(f"transfer-server: configuration error: {exc}", file=sys.stderr)
        return 2
    if ns.check_config:
        try:  # the files it names too (keys, certificates, peers), as a start would read them
            Node(config)
            server_tls(config)
            load_log_keys(config)
            files_problem = raise_open_file_limit(config.limits)
            if files_problem is not None:
                raise StartRefused(files_problem)
            # where the start will write it (nothing is written: no file, no directory)
            unwritable = checkpoint_file_problem(config.latest_checkpoint_file, make=False)
            if unwritable is not None:
                raise StartRefused(unwritable)
        except (OSError, StartRefused) as exc:
            print(f"transfer-server: configuration error: {exc}", file=sys.stderr)
            return 1
        for name in unused_environment():
            print(f"transfer-server: warning: {_UNUSED.format(name=name)}", file=sys.stderr)
        print("configuration is valid")
        return 0
    logs.configure(config.log_level, config.log_format)
    for name in unused_environment():
        logging.getLogger("transfer.node").warning(_UNUSED.format(name=name), extra={"variable": name})
    try:
        asyncio.run(_serve(Node(config, accept_missing_checkpoint_file=ns.accept_missing_checkpoint_file), ns.config))
    except (OSError, StartRefused) as exc:
        logging.getLogger("transfer.node").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

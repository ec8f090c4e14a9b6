"""How a loop that retries on its own says the database is unavailable.

While the database is down, full or locked, every round of the writer, the
checkpoint publisher, the sweeper and the federation dispatcher fails the
same way. Each says so in one line with the reason, without a traceback, at
most every UNAVAILABLE_LOG_SECONDS, with the count of the failures it did not
log since; unexpected failures keep their tracebacks where they are logged.
Standard library only: used by storage/ and transfer/server/ alike.
"""

from __future__ import annotations

import logging
import time

from transfer.domain.errors import Unavailable

UNAVAILABLE_LOG_SECONDS = 10.0


class UnavailableLog:
    """One throttled log line per kind of failure (`message`) of one loop."""

    def __init__(self, logger: logging.Logger, message: str, *, detailed: bool = False) -> None:
        self._logger = logger
        self._message = message
        self._detailed = detailed  # the reason and the failure's message in the line's text too
        self._logged_at = -UNAVAILABLE_LOG_SECONDS
        self._unlogged = 0

    def failed(self, exc: Unavailable, **extra: object) -> None:
        now = time.monotonic()
        if now - self._logged_at < UNAVAILABLE_LOG_SECONDS:
            self._unlogged += 1
            return
        self._logger.error(
            f"{self._message} ({exc.reason}: {exc.message})" if self._detailed else self._message,
            extra={**extra, "reason": exc.reason, "detail": exc.message, "not_logged": self._unlogged},
        )
        self._logged_at, self._unlogged = now, 0

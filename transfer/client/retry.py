"""The one place retry policies are built (tenacity).

Only transient failures are retried (see `errors.TransferError.transient`), with
exponential backoff and full jitter, a bounded number of attempts and a
bounded total time, logging a line before each sleep. Callers reuse one
request_id across attempts, so a retried mutation is applied at most once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from transfer.client.errors import TransferError

log = logging.getLogger("transfer.client")


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransferError) and exc.transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    total_seconds: float = 30.0

    def retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff, max=self.max_backoff, jitter=self.initial_backoff
            ),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.total_seconds),
            before_sleep=before_sleep_log(log, logging.INFO),
            reraise=True,
        )


NO_RETRY = RetryPolicy(attempts=1)

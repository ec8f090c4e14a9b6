"""Client library and command-line tool for school systems and admins."""

from transfer.client.client import ClientTls, TransferClient, new_request_id
from transfer.client.errors import TransferError
from transfer.client.retry import NO_RETRY, RetryPolicy

__all__ = ["NO_RETRY", "ClientTls", "RetryPolicy", "TransferClient", "TransferError", "new_request_id"]

"""The gRPC node: servicers, authentication, configuration and start-up."""

from transfer.extras import require_server_extra

require_server_extra("transfer.server")

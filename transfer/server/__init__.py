"""The gRPC node: servicers, authentication, configuration and start-up."""

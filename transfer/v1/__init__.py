"""Generated protobuf and gRPC code for package transfer.v1 (do not edit)."""

"""School-record transfer service: control of digital school records (học bạ số),
teachers' signing duties, and an append-only log, served over gRPC."""

__version__ = "0.1.0"

"""The domain: rules and use cases of records, schools and transfers.

Pure Python: no grpc, no SQLAlchemy. Storage implements the repository
protocols of `ports`; the server converts requests into the commands here.
"""

# A school-record transfer node.
#
#   docker build -t hocba-transfer .
#   docker run -v $PWD/node:/etc/hocba:ro -v hocba-data:/var/lib/hocba -v hocba-state:/var/lib/hocba-state \
#       -p 50051:50051 hocba-transfer
#
# /etc/hocba/node.toml is the node's configuration (see docs/operations.md);
# its TLS files and a sqlite:////var/lib/hocba/node.db URL (or a
# postgresql:// one) go beside it, with
# log.latest_checkpoint_file = "/var/lib/hocba-state/latest-checkpoint". The node runs as the unprivileged user
# "node"; the health check asks the node's own gRPC health service over mTLS.
FROM debian:bookworm-slim

# Optional: a CA bundle for pip when PyPI is reached through a TLS proxy.
ARG PIP_CERT=

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/hocba
COPY pyproject.toml constraints.txt README.md ./
COPY transfer ./transfer
COPY storage ./storage
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --quiet -c constraints.txt ".[server]" \
    && /opt/venv/bin/python -c "import transfer.server.app"

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/hocba --create-home --shell /usr/sbin/nologin node \
    && mkdir -p /etc/hocba /var/lib/hocba-state && chown node:node /var/lib/hocba /var/lib/hocba-state

USER node
# Data, and apart from it the copy of the latest signed checkpoint
# (log.latest_checkpoint_file): a restore of the one must not take back the other.
VOLUME ["/var/lib/hocba", "/var/lib/hocba-state"]
EXPOSE 50051
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/venv/bin/transfer-healthcheck", "--config", "/etc/hocba/node.toml"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/transfer-server", "--config", "/etc/hocba/node.toml"]

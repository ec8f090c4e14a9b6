# A school-record transfer node.
#
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest> -t hocba-transfer .
#   docker run -v $PWD/node:/etc/hocba:ro -v hocba-data:/var/lib/hocba -v hocba-state:/var/lib/hocba-state \
#       -p 50051:50051 hocba-transfer
#
# /etc/hocba/node.toml is the node's configuration (see docs/operations.md, "Container");
# its TLS files and a sqlite:////var/lib/hocba/node.db URL (or a
# postgresql:// one) go beside it, with
# log.latest_checkpoint_file = "/var/lib/hocba-state/latest-checkpoint". The node runs as the unprivileged user
# "node" (uid 10001); the health check asks the node's own gRPC health service over mTLS.
#
# Two stages: the builder makes /opt/venv from the hash-locked requirements (requirements/*.lock, made
# from constraints.txt; tests/test_image.py keeps them in step); the runtime stage has python3 and that
# venv only: no pip, no venv module, no compilers, no apt lists or caches.

# The base. Production builds pin it by digest (docs/operations.md, "Container": the digest pin):
#   --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest of the official image>
# Both stages use it, so the venv is built against the same python3 that runs it.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder

# Optional: a CA bundle for pip when PyPI is reached through a TLS proxy.
ARG PIP_CERT=

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY requirements/build.lock requirements/server.lock ./requirements/
# Every distribution is checked against the lock's sha256 hashes and nothing is resolved here (--no-deps):
# what is installed is exactly what the lock names. Wheels only: the builder needs no compiler.
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --quiet --disable-pip-version-check \
        --require-hashes --no-deps --only-binary :all: \
        -r requirements/build.lock -r requirements/server.lock

COPY pyproject.toml README.md ./
COPY transfer ./transfer
COPY storage ./storage
# The project itself, built offline with the locked setuptools, then the installers are taken out of the venv.
RUN /opt/venv/bin/pip install --no-cache-dir --quiet --disable-pip-version-check \
        --no-deps --no-index --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --quiet --yes setuptools pip \
    && /opt/venv/bin/python -c "import transfer.server.app, storage.migrate"

FROM ${BASE_IMAGE}

# ca-certificates: for https:// witness URLs (log.witnesses[].url); gRPC trusts only the configured CAs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log

COPY --from=builder /opt/venv /opt/venv

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/hocba --create-home --shell /usr/sbin/nologin node \
    && mkdir -p /etc/hocba /var/lib/hocba-state && chown node:node /var/lib/hocba /var/lib/hocba-state

USER 10001:10001
# Data, and apart from it the copy of the latest signed checkpoint
# (log.latest_checkpoint_file): a restore of the one must not take back the other.
VOLUME ["/var/lib/hocba", "/var/lib/hocba-state"]
EXPOSE 50051
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/venv/bin/transfer-healthcheck", "--config", "/etc/hocba/node.toml"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/transfer-server", "--config", "/etc/hocba/node.toml"]

# syntax=docker/dockerfile:1
# opswatch in a container: a slim, non-root image that logs JSON to stdout.
#
#   docker build -t opswatch .
#   docker run --init -v opswatch-data:/data -p 127.0.0.1:9184:9184 \
#       -e OPSWATCH_CHECKS=host opswatch
#   docker run --rm -e OPSWATCH_CHECKS=host opswatch check-config
#
# Configuration is the same OPSWATCH_* environment as on a host (see systemd/env.example);
# secrets come from files with NAME_FILE (Docker/compose secrets). State lives in /data.
# If OPSWATCH_API_LISTEN moves off port 9184, override the HEALTHCHECK too. Listening on
# 0.0.0.0 without OPSWATCH_API_READ_TOKEN or OPSWATCH_API_TOKEN, the API serves /healthz only
# (what the HEALTHCHECK probes): set a token (_FILE: a secret) to read the rest.
#
# Both stages use the same base image, so the venv's interpreter path stays valid.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a self-contained venv in /opt/opswatch -------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/opswatch

WORKDIR /build
# Only what the build needs (README.md is the package's readme in pyproject.toml): a change
# to tests or docs does not invalidate this layer.
COPY pyproject.toml README.md ./
COPY src ./src
# pip and setuptools (ensurepip puts both into a 3.11 venv) only build: the runtime venv
# holds opswatch and its dependencies, nothing that installs or compiles. Some dependencies
# ship their own test suites inside the package (croniter/tests): never imported, removed.
RUN /opt/opswatch/bin/pip install . \
    && /opt/opswatch/bin/pip uninstall --yes --quiet pip setuptools \
    && find /opt/opswatch/lib -type d -name tests -prune -exec rm -rf {} + \
    && /opt/opswatch/bin/opswatch --help > /dev/null

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="opswatch" \
      org.opencontainers.image.description="Watch a host and its services, fix what is safe to fix, page only when it matters." \
      org.opencontainers.image.licenses="MIT"

# A fixed uid/gid so volume ownership survives image rebuilds and matches across hosts.
# The python images ship pip, setuptools and wheel beside the interpreter: the runtime needs
# none of them (a base without pip, as in `make image-test`, skips that step).
RUN groupadd --system --gid 10001 opswatch \
    && useradd --system --uid 10001 --gid opswatch --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin opswatch \
    && install -d -m 0750 -o opswatch -g opswatch /data \
    && if python -m pip --version > /dev/null 2>&1; then \
           python -m pip uninstall --yes --quiet pip setuptools wheel; \
       fi

COPY --from=builder /opt/opswatch /opt/opswatch

ENV PATH=/opt/opswatch/bin:$PATH \
    OPSWATCH_STATE_PATH=/data/opswatch.sqlite3 \
    OPSWATCH_API_LISTEN=0.0.0.0:9184 \
    OPSWATCH_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME ["/data"]
WORKDIR /data
EXPOSE 9184

# Numeric, so runtimes (e.g. Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001

# No curl in slim images: python's urllib raises (exit 1) on a refused connection, a
# timeout or a non-2xx answer (/healthz answers 503 when the scheduler has stalled).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9184/healthz', timeout=4)"]

# The daemon stops its scheduler and flushes the outbox for up to OPSWATCH_SHUTDOWN_GRACE
# (10 s) on SIGTERM: give `docker stop` more than that (`--stop-timeout 20`,
# compose `stop_grace_period: 20s`). Run with --init (compose `init: true`) so a PID 1
# reaps the children of recovery commands.
STOPSIGNAL SIGTERM
ENTRYPOINT ["opswatch"]
CMD ["run"]

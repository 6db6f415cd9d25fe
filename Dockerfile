# The platform image: one image for the lifecycle, the gateway (pub) and the dashboard. The
# command picks the component: `trackside serve lifecycle|pub|dashboard --host 0.0.0.0 --port N`
# (kustomize/base sets it per Deployment). Built by `make image`. Job images are not built from
# this file (their template belongs to wrappers/python3).
#
# No HEALTHCHECK: one image serves three components on three ports, and Kubernetes ignores it;
# each Deployment has its own probes (/lifecycle/live, /pub/live, ...).

# Pinned base; `make image PYTHON_IMAGE=...` builds on another (e.g. a mirror, or a digest).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.11-slim-bookworm
# The uv that wrote uv.lock (tests/kubernetes checks they agree).
ARG UV_VERSION=0.13.9

# ---- build: the virtual environment from uv.lock --------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION
# true: uv trusts the system's CA certificates (behind a TLS-inspecting proxy, with its CA in the
# base image or mounted at build time)
ARG UV_SYSTEM_CERTS=false
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, in a layer that only a change of the lock rebuilds.
COPY pyproject.toml uv.lock README.md ./
COPY wrappers/python3/pyproject.toml wrappers/python3/README.md wrappers/python3/
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-cache --python python3 \
        --no-install-project --no-install-package trackside-wrapper
# Then the platform's own code (installed editable, as in development: the lifecycle finds the
# job runtime's source at /app/wrappers/python3 to install it into job environments).
COPY trackside trackside
COPY lifecycle lifecycle
COPY pub pub
COPY dashboard dashboard
COPY wrappers/python3 wrappers/python3
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-cache --python python3 \
    && python3 -m compileall -q trackside lifecycle pub dashboard wrappers/python3/trackside_wrapper

# ---- runtime: the environment and the code, a non-root user, nothing else ---------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trackside" \
      org.opencontainers.image.description="Trackside platform: lifecycle, gateway (pub) and dashboard" \
      org.opencontainers.image.licenses="Apache-2.0"
# git: the lifecycle fetches job sources from git remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 trackside \
    && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /home/trackside --create-home \
        --shell /usr/sbin/nologin trackside \
    && install -d -o 10001 -g 10001 -m 700 /var/lib/trackside
COPY --from=build /app /app
WORKDIR /app
# Read-only root filesystem in the pods: nothing writes bytecode; data and /tmp are volumes.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRACKSIDE_DATA_DIR=/var/lib/trackside
USER 10001:10001
EXPOSE 7200 7205 7210
CMD ["trackside", "serve", "lifecycle", "--host", "0.0.0.0", "--port", "7200"]

# The shipper agent image: `docker build -t shipper:0.1.0 .` (see docs/deploy.md).
# Two stages: the build stage makes a venv at /opt/shipper from pinned wheels; the final stage
# copies only that venv onto the same slim base, so no compiler, pip cache or source tree ships.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Wheels only (--only-binary): nothing may need a compiler, here or later. --no-deps: the lock is
# the whole dependency closure, so nothing unpinned slips in; `pip check` proves it is complete.
COPY deploy/requirements.lock deploy/build-requirements.lock /tmp/
RUN python -m venv /opt/shipper \
    && /opt/shipper/bin/pip install --only-binary=:all: --no-deps -r /tmp/requirements.lock \
    && /opt/shipper/bin/pip check
# shipper's wheel compiles its two per-line hot modules with mypyc (setup.py), so this stage
# gets a C compiler; the final stage copies only the venv, never the compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# Build the wheel with the pinned build backend and mypyc in a throwaway venv, then install the
# wheel alone.
COPY pyproject.toml setup.py /src/
COPY shipper /src/shipper
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --only-binary=:all: -r /tmp/build-requirements.lock \
    && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels /src \
    && /opt/shipper/bin/pip install --no-deps /tmp/wheels/shipper-*.whl \
    && /opt/shipper/bin/pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="shipper" \
      org.opencontainers.image.description="Kubernetes log shipper for Loki" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled at install time; the root filesystem is read-only in the DaemonSet.
ENV PATH=/opt/shipper/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/shipper /opt/shipper
# The DaemonSet runs the agent as uid 0 with every capability dropped: the container runtime
# writes node log files root:root 0640, readable by their owner without any capability (the
# full reasoning is in deploy/k8s/shipper.yaml). Stated here so the image and manifest agree.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 9080
ENTRYPOINT ["python", "-m", "shipper"]
CMD ["run", "--config", "/etc/shipper/config.yaml"]

# syntax=docker/dockerfile:1
# The control plane's image: wheels are built in the first stage, the final stage has no
# compiler, runs as a non-root user, and writes only to /tmp (readOnlyRootFilesystem).
# Offline builds (tests/ship/test_image.py) pass a local base image as PYTHON_IMAGE,
# BUILD_PACKAGES= (every dependency is already a wheel) and a wheelhouse through
# PIP_NO_INDEX / PIP_FIND_LINKS; a release build passes none of them.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG BUILD_PACKAGES=build-essential
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN if [ -n "$BUILD_PACKAGES" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends $BUILD_PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/controlplane/bin:$PATH HOME=/tmp TMPDIR=/tmp \
    CONTROLPLANE_CONFIG=/etc/controlplane/controlplane.yaml CONTROLPLANE_HOST=0.0.0.0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/controlplane \
 && /opt/controlplane/bin/pip install --no-index --find-links /wheels controlplane \
 && python -m compileall -q /opt/controlplane \
 && groupadd --gid 10001 controlplane \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin controlplane
COPY controlplane.yaml /etc/controlplane/controlplane.yaml
COPY checks /etc/controlplane/checks
COPY runbooks /etc/controlplane/runbooks
COPY deploy/platform /etc/controlplane/deploy/platform
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["controlplane"]
CMD ["run"]

# syntax=docker/dockerfile:1
# One image for every stage: the command picks the stage (`darkroom worker resize`, ...).
# Nothing of bench/ goes in: the benchmark harness is a development tool (.dockerignore keeps it out).
# libvips comes inside the pyvips-binary wheel, so the runtime needs no system packages at all.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: install darkroom and its dependencies into a self-contained venv -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/darkroom
WORKDIR /src
# Dependencies first (a layer that survives code edits), then the code itself.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY storage ./storage
COPY stages ./stages
COPY orchestration ./orchestration
COPY operations ./operations
COPY web ./web
RUN /opt/darkroom/bin/pip install --no-cache-dir .

# --- runtime: the venv, a non-root user, nothing else --------------------------------------------
# /var/lib/darkroom: state of the business consumers (their SQLite file); a named volume mounted there
# inherits the darkroom owner.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="darkroom" \
      org.opencontainers.image.description="darkroom stage worker: Kafka in, libvips renditions to S3 out" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 darkroom \
 && useradd --system --uid 10001 --gid darkroom --home-dir /home/darkroom --create-home --shell /usr/sbin/nologin darkroom \
 && install -d -o darkroom -g darkroom /var/lib/darkroom
COPY --from=build /opt/darkroom /opt/darkroom
ENV PATH=/opt/darkroom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    DARKROOM_LOG_LEVEL=INFO \
    DARKROOM_TOPICS__MANAGE=false \
    DARKROOM_WORKER__HTTP_HOST=0.0.0.0 \
    DARKROOM_WORKER__HTTP_PORT=8080
WORKDIR /home/darkroom
USER 10001:10001
EXPOSE 8080
# Liveness of the worker's health server; no curl in a slim image, so Python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DARKROOM_WORKER__HTTP_PORT', '8080') + '/health/live', timeout=4)"]
ENTRYPOINT ["darkroom"]
CMD ["worker", "resize"]

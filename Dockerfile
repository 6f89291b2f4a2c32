# syntax=docker/dockerfile:1
# The images that docs/operations/docker-compose.yaml and docs/operations/k8s/ run, one
# target each: store, pipeline, orchestrator (ghcr.io/market-data/market-data-<target>).
#
#   docker build --target store -t ghcr.io/market-data/market-data-store .
#   cd docs/operations && docker compose build
#
# Stage `wheels` builds the workspace's wheels with uv and exports uv.lock's pins as pip
# constraints; each runtime target installs only the wheels it needs, by path (so pip never
# takes a project package from an index), with its extras and the locked third-party
# versions, binaries only: no compiler, no uv, no sources in the image. The CMD is the
# command compose and Kubernetes run (no ENTRYPOINT: a Kubernetes `args` or a compose
# `command` replaces it whole). integration-tests/tests/test_images.py checks this file
# against compose and the manifests and emulates every stage on the test machine.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=latest

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# -- build: the wheels and the constraints ---------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS wheels
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --package market-data-core --wheel --out-dir /dist \
    && uv build --package market-data-store --wheel --out-dir /dist \
    && uv build --package market-data-pipeline --wheel --out-dir /dist \
    && uv build --package market-data-orchestrator --wheel --out-dir /dist \
    && uv export --locked --no-hashes --no-header --no-annotate --no-emit-workspace \
        --all-packages --all-extras --no-default-groups --output-file /dist/constraints.txt

# -- runtime: what every image shares ---------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The services' working directory: the store's default SQLite file and dead-letter file,
# the orchestrator's audit log (compose mounts a named volume here, owned by this user).
RUN groupadd --system --gid 10001 market-data \
    && useradd --system --uid 10001 --gid market-data --no-create-home \
        --home-dir /var/lib/market-data --shell /usr/sbin/nologin market-data \
    && install -d -o market-data -g market-data /var/lib/market-data /etc/market-data
WORKDIR /var/lib/market-data

# -- store: mds serve (PostgreSQL through asyncpg, feedback on Redis) -------------------
FROM runtime AS store
RUN --mount=type=bind,from=wheels,source=/dist,target=/wheels \
    pip install --only-binary=:all: --constraint /wheels/constraints.txt \
        /wheels/market_data_core-*.whl /wheels/market_data_store-*.whl \
        "market-data-store[postgres,redis]"
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]
CMD ["mds", "serve", "--host", "0.0.0.0", "--port", "8080"]

# -- pipeline: mdp run (ticks and feedback on Redis, bars through the store service) ----
FROM runtime AS pipeline
RUN --mount=type=bind,from=wheels,source=/dist,target=/wheels \
    pip install --only-binary=:all: --constraint /wheels/constraints.txt \
        /wheels/market_data_core-*.whl /wheels/market_data_store-*.whl \
        /wheels/market_data_pipeline-*.whl \
        "market-data-pipeline[store,redis,http]"
ENV MDP_METRICS_PORT=9100 MDP_METRICS_HOST=0.0.0.0
USER 10001:10001
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=4)"]
CMD ["mdp", "run", "/etc/market-data/pipeline.yaml", "--quiet"]

# -- orchestrator: mdo serve, its jobs as `mdp run` children (the pipeline image's) -----
FROM runtime AS orchestrator
RUN --mount=type=bind,from=wheels,source=/dist,target=/wheels \
    pip install --only-binary=:all: --constraint /wheels/constraints.txt \
        /wheels/market_data_core-*.whl /wheels/market_data_store-*.whl \
        /wheels/market_data_pipeline-*.whl /wheels/market_data_orchestrator-*.whl \
        "market-data-orchestrator[redis]" "market-data-pipeline[store,redis,http]"
USER 10001:10001
EXPOSE 8090
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/readyz', timeout=4)"]
CMD ["mdo", "serve", "/etc/market-data/deployment.yaml", "--host", "0.0.0.0", "--port", "8090"]

# The standard training image: the project installed from uv.lock, run as a non-root user.
#   GPU (default):  docker build -t $IMAGE .
#   CPU:            docker build --build-arg BASE_IMAGE=python:3.12-slim-bookworm
#                     --build-arg XGBOOST=cpu -t $IMAGE .   (one command line)
# XGBOOST picks the dependency group: gpu is the CUDA build with NCCL (about 700 MB), cpu the
# xgboost-cpu build (about 20 MB); both train the same booster on a CPU.
# prefect.yaml tags it with a hash of this file + uv.lock (deployments/image.py), so it is rebuilt
# only when they change.
ARG BASE_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${BASE_IMAGE}
ARG PYTHON_VERSION=3.12
ARG XGBOOST=gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_DOWNLOADS=automatic \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    MLOPS_PROJECT_DIR=/opt/prefect-mlops \
    MLOPS_HOME=/opt/prefect-mlops/.mlops \
    PATH=/opt/prefect-mlops/.venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libgomp1: XGBoost's OpenMP; git: the optional git_clone pull step
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /bin/bash mlops

COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /opt/prefect-mlops

# dependencies first (cached while only the code changes), then the project itself
COPY pyproject.toml uv.lock README.md ./
RUN uv python install "${PYTHON_VERSION}" \
    && uv sync --frozen --no-default-groups --group "${XGBOOST}" --no-install-project \
        --python "${PYTHON_VERSION}"
COPY mlops ./mlops
COPY flows ./flows
COPY tasks ./tasks
COPY deployments ./deployments
COPY configs ./configs
COPY prefect.yaml ./
RUN uv sync --frozen --no-default-groups --group "${XGBOOST}" --python "${PYTHON_VERSION}" \
    && mkdir -p .mlops \
    && chown -R 10001:10001 .mlops

USER 10001:10001
CMD ["mlops", "--help"]

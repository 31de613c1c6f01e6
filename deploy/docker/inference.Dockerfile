# syntax=docker/dockerfile:1
# Inference API: serves the promoted model on CPU (tensorflow-cpu).
# Build from the repository root:  docker build -f deploy/docker/inference.Dockerfile -t sporeprint/inference .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, at the locked versions (hash-checked), so that a code change does not reinstall them.
COPY requirements/inference.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
COPY sporeprint ./sporeprint
RUN pip install --no-cache-dir --no-deps . \
    && python -I -c "import services.inference.main"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPOREPRINT_WORK_DIR=/data/work
RUN useradd --create-home --uid 10001 --user-group sporeprint \
    && mkdir -p /data/work \
    && chown sporeprint:sporeprint /data/work
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/sporeprint
EXPOSE 8004
CMD ["uvicorn", "services.inference.main:app", "--host", "0.0.0.0", "--port", "8004", "--proxy-headers", "--no-access-log"]

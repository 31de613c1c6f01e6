# syntax=docker/dockerfile:1
# The GPU training worker: `python -m services.trainer.worker train` (shared.worker with TensorFlow imported
# once before RQ forks, so each job starts at once) on CUDA.
# Build from the repository root:  docker build -f deploy/docker/trainer-gpu.Dockerfile -t sporeprint/trainer-gpu .
#
# The TensorFlow GPU base is TensorFlow's own pip route, `tensorflow[and-cuda]` (CUDA and cuDNN as pinned
# wheels), on the same Python as the other images: the tensorflow/tensorflow:*-gpu images ship the distro's
# Python, which need not satisfy requires-python >= 3.11. The host needs only the NVIDIA driver and the
# NVIDIA container toolkit. requirements/trainer-gpu.lock pins them (make lock), at the CPU images' TensorFlow.
# Which GPUs a container sees is the runtime's choice, not the image's: compose's device_ids, the Kubernetes
# device plugin (nvidia.com/gpu). No NVIDIA_VISIBLE_DEVICES here: "all" would hand every GPU of a node to any
# container of this image that asked for none.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# The trainer extra with tensorflow[and-cuda] in place of tensorflow-cpu (which would shadow the CUDA build).
COPY requirements/trainer-gpu.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
COPY sporeprint ./sporeprint
RUN pip install --no-cache-dir --no-deps . \
    && python -I -c "import shared.worker, services.trainer.worker"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPOREPRINT_WORK_DIR=/data/work \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN useradd --create-home --uid 10001 --user-group sporeprint \
    && mkdir -p /data/work \
    && chown sporeprint:sporeprint /data/work
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/sporeprint
CMD ["python", "-m", "services.trainer.worker", "train"]

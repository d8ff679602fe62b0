# The training images, one target per framework family on one base:
#   paddle    PaddleDetection 2.6
#   pytorch   ultralytics YOLOv3/v5 (the yolov5 package); YOLOX, miemiedetection and the
#             jetson-inference SSD trainer at the commits their build args name (none: left out)
# `detk8s build` builds a target from a context it assembles (detk8s/images/staged.py): this
# file, requirements/, wheels/ (the detk8s that renders the jobs, as a wheel) and configs/ (the
# model configs). The pod runs `detk8s exec` (detk8s/layout.py, POD): the run's ConfigMap at
# /etc/detk8s, outputs in /output, datasets in /data, model configs in /opt/detk8s/configs.
#
# Paddle 2.6.2's GPU wheel on PyPI is built for CUDA 12.0 + cuDNN 8.9; CUDA 12 minor versions are
# compatible, and this runtime image is the first 12.x one shipping cuDNN 8.9. torch brings its
# own CUDA libraries as wheels.
ARG BASE_IMAGE=nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04

# --- shared: OS, Python venv, the non-root user, detk8s's own dependencies -------------------------
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# libgomp1: OpenMP of paddle and torch; libgl1 + libglib2.0-0: opencv; git: trainer checkouts.
# The user 10001 is the one pods run as (detk8s/paths.py, IMAGE_UID): never root.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates libgomp1 libgl1 libglib2.0-0 git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 detk8s \
 && useradd --create-home --uid 10001 --gid 10001 --shell /bin/bash detk8s \
 && mkdir -p /output /data /etc/detk8s /opt/detk8s \
 && chown detk8s:detk8s /output /data
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
COPY requirements/detk8s.txt /tmp/requirements-detk8s.txt
RUN pip install -r /tmp/requirements-detk8s.txt
WORKDIR /home/detk8s
ENTRYPOINT ["detk8s", "exec"]
CMD ["--help"]

# --- detk8s itself: the last, small layers of every target ----------------------------------------
FROM base AS detk8s
COPY wheels/ /opt/detk8s/wheels/
COPY configs/ /opt/detk8s/configs/
COPY requirements/install-detk8s.sh /opt/detk8s/install-detk8s.sh

# --- PaddleDetection -------------------------------------------------------------------------------
FROM base AS paddle
# PADDLE picks the wheel: paddlepaddle==2.6.2 for CPU.
ARG PADDLE=paddlepaddle-gpu==2.6.2
COPY requirements/requirements-paddle.txt /tmp/requirements-paddle.txt
RUN pip install "${PADDLE}" -r /tmp/requirements-paddle.txt
COPY --from=detk8s /opt/detk8s /opt/detk8s
RUN sh /opt/detk8s/install-detk8s.sh
USER 10001:10001

# --- the PyTorch trainers --------------------------------------------------------------------------
FROM base AS pytorch
# TORCH is a list of requirements: split on purpose.
ARG TORCH="torch==2.14.1 torchvision==0.29.1"
COPY requirements/requirements-pytorch.txt /tmp/requirements-pytorch.txt
# hadolint ignore=SC2086
RUN pip install ${TORCH} -r /tmp/requirements-pytorch.txt
# Trainer checkouts in /opt/trainers/<name> (layout.py, POD), each at the commit its build arg
# names; an empty one leaves it out. YOLOX 0.3.0 (its PyPI release, whose parsers the tests load);
# miemiedetection's newest; pytorch-ssd as jetson-inference pins it (through pytorch-detection).
ARG YOLOX_COMMIT=419778480ab6ec0590e5d3831b3afb3b46ab2aa3
ARG MIEMIEDETECTION_COMMIT=7193fa8602b4ccf30f98747cc57a65ca44c6196d
ARG PYTORCH_SSD_COMMIT=6accaa88845ec135a7d6fe25e9a26afd4698639d
COPY requirements/checkout.sh /opt/detk8s/checkout.sh
RUN sh /opt/detk8s/checkout.sh YOLOX https://github.com/Megvii-BaseDetection/YOLOX "${YOLOX_COMMIT}" \
 && sh /opt/detk8s/checkout.sh miemiedetection https://github.com/miemie2013/miemiedetection \
      "${MIEMIEDETECTION_COMMIT}" \
 && sh /opt/detk8s/checkout.sh pytorch-ssd https://github.com/dusty-nv/pytorch-ssd \
      "${PYTORCH_SSD_COMMIT}"
COPY --from=detk8s /opt/detk8s /opt/detk8s
RUN sh /opt/detk8s/install-detk8s.sh
USER 10001:10001

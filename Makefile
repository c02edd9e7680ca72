# `make lint`, `make test` and `make demo` create .venv with everything the project needs when it is
# missing (or when pyproject.toml changed), then run. pip's cache is kept between installs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install test demo bench lint

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

test: install
	. ./env.sh && python -m pytest

demo: install
	. ./env.sh && LENSING_SUITE=$${LENSING_SUITE:-demo} LENSING_NSIDE=$${LENSING_NSIDE:-256} \
	  LENSING_TRAINING_PRESET=$${LENSING_TRAINING_PRESET:-cpu_demo} python -m lensing_assets.demo

bench: install
	. ./env.sh && python bench/bench_tiles.py

# ruff (style and mistakes), formatting, mypy over both packages (pyproject's [tool.mypy]),
# and the import contracts between the layers ([tool.importlinter]).
lint: install
	. ./env.sh && ruff check lensing_core lensing_assets tests bench \
	  && ruff format --check lensing_core lensing_assets tests bench \
	  && mypy \
	  && lint-imports

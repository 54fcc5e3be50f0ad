# The two README commands: `make train` (the main job) and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml
SHARED_DATA := $(abspath ../shared/data/cifar-10-batches-bin)

# Use the shared copy of CIFAR-10 when it sits beside the repository (development and CI); never copy it in.
ifneq ($(wildcard $(SHARED_DATA)/data_batch_1.bin),)
export RESNET_CIFAR_DATA ?= $(SHARED_DATA)
endif

.PHONY: train test lint models clean-venv

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,export]'
	touch $@

# `make train RESUME=outputs/default` continues an interrupted run exactly where it stopped.
train: $(BIN)/.installed
	$(BIN)/resnet-cifar train $(if $(RESUME),--resume $(RESUME),--config $(CONFIG))

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks

models: $(BIN)/.installed
	$(BIN)/resnet-cifar models

clean-venv:
	rm -rf $(VENV)

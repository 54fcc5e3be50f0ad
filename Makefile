# The two README commands: `make train` (the main job) and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/fast80.yaml
SHARED_DATA := $(abspath ../shared/data/cifar-10-batches-bin)

# Use the shared copy of CIFAR-10 when it sits beside the repository (development and CI); never copy it in.
ifneq ($(wildcard $(SHARED_DATA)/data_batch_1.bin),)
export RESNET_CIFAR_DATA ?= $(SHARED_DATA)
endif

.PHONY: train test lint models clean-venv

$(BIN)/.installed: pyproject.toml lab/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,export,serve]'
	$(BIN)/pip install -q -e lab  # the repository's ledger, renderers and studies: never part of the package
	touch $@

# `make train RESUME=outputs/fast80` continues an interrupted run exactly where it stopped. The run's inference.png
# is also copied to outputs/inference.png, the picture the README shows.
train: $(BIN)/.installed
	$(BIN)/resnet-cifar train $(if $(RESUME),--resume $(RESUME),--config $(CONFIG) --publish-picture)

# On a CPU with AVX-512 the runtime and inference tests run a second time on PyTorch's and oneDNN's AVX2 kernels,
# so the path of an AVX2-only machine (bf16 emulated) is exercised for real there too.
AVX2_KERNELS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
RUNTIME_TESTS := tests/runtime tests/inference/test_inference.py
NOT_TWICE := --deselect tests/runtime/test_precision_under_load.py  # on AVX2 kernels the facts alone say fp32
HAS_AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes)

test: $(BIN)/.installed
	$(BIN)/ruff check src lab tests benchmarks tools
	$(BIN)/python -m pytest -q
ifeq ($(HAS_AVX512),yes)
	$(AVX2_KERNELS) $(BIN)/python -m pytest -q -p no:cacheprovider $(RUNTIME_TESTS) $(NOT_TWICE)
endif

lint: $(BIN)/.installed
	$(BIN)/ruff check src lab tests benchmarks tools
	$(BIN)/ruff format --check lab tests benchmarks  # src packs long signatures and calls: checked by ruff check

models: $(BIN)/.installed
	$(BIN)/resnet-cifar models

clean-venv:
	rm -rf $(VENV)

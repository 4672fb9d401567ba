# edgenode: set up a machine, run the main job, run the tests.
# Everything the project needs is installed from here: Debian packages with apt-get,
# the Python package and its dependencies into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the project needs (grows as features land).
APT_PACKAGES ?= python3 python3-venv python3-dev gcc libc6-dev libssl-dev runc crun runsc tini busybox-static umoci skopeo nftables iproute2 iputils-ping iperf3
STATE_DIR ?= /var/lib/edgenode-demo

.PHONY: up down install test lint typecheck unit bench clean

## up: install everything, then run the main job
up: install
	$(BIN)/edgenode demo --nodes 3 --state-dir $(STATE_DIR)

## down: remove what `make up` created
down:
	-$(BIN)/edgenode demo --down --state-dir $(STATE_DIR)
	rm -rf $(STATE_DIR)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile store/_cchange.c
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q $$missing; \
	fi
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "edgenode needs Python 3.11 or newer, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# compat: a plain path entry instead of an import hook, which cost every CLI call ~30 ms.
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	# Byte-compile now: where PYTHONDONTWRITEBYTECODE is set, every CLI call would compile anew.
	$(BIN)/python -m compileall -q edgenode store sandbox gossip
	touch $@

## test: lint, type-check and the whole test suite
test: install lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest

bench: install
	bench/run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

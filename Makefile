# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Each creates .venv from pyproject.toml when it is missing.
SHELL := /bin/bash
# python3.12 may be a pyenv shim that is not the active version; fall back to pyenv's own 3.12 install.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
VPY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: quickstart test test-isaaclab lint clean-venv proto

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3.12 not found: install Python 3.12 or pass PYTHON=/path/to/python3.12"; exit 1; }
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	@touch $@

quickstart: $(VENV)/.installed
	$(VENV)/bin/robopolicy quickstart

test: $(VENV)/.installed
	$(VPY) -m pytest

# Isaac Lab 3 pins mujoco ~3.12 (through Newton) and Meta-World needs 3.3.0, so the two cannot share .venv: its
# tests (the adapter on Isaac Lab's own cartpole task with our locally authored asset, and PPO learning it through
# the CLI) run in .venv-isaaclab, with the repository on PYTHONPATH; diffusers because the heads import it (docs/envs.md).
ISAAC_VENV := .venv-isaaclab
$(ISAAC_VENV)/.installed:
	@test -n "$(PYTHON)" || { echo "python3.12 not found: install Python 3.12 or pass PYTHON=/path/to/python3.12"; exit 1; }
	@test -x $(ISAAC_VENV)/bin/python || $(PYTHON) -m venv $(ISAAC_VENV)
	$(ISAAC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ISAAC_VENV)/bin/python -m pip install --quiet 'isaaclab==3.0.0' 'diffusers>=0.30' 'pytest>=8'
	@touch $@

test-isaaclab: $(ISAAC_VENV)/.installed
	PYTHONPATH=$(CURDIR) $(ISAAC_VENV)/bin/python -m pytest tests/envs/test_isaaclab.py -m isaaclab -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check robopolicy envs fleet tests benchmarks

clean-venv:
	rm -rf $(VENV)

# Regenerate fleet/proto/*_pb2*.py from fleet/proto/fleet.proto (needs the dev extra: grpcio-tools).
proto: $(VENV)/.installed
	$(VPY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. fleet/proto/fleet.proto

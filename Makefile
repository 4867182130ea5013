# pinned.winrm: set-up, demo, tests and benchmarks from a fresh clone.
#   make demo   creates .venv, installs what is needed, starts the lab with a real proxy and runs examples/
#   make test   the whole test suite (what CI runs), strict mypy on plugins/ included
#   make test-loaded  make test LOADED_RUNS times in a row (default 3) with a busy loop on every CPU core
#   make bench  the benchmarks against ansible.builtin.psrp and ansible.builtin.winrm
#   make reliability-report  a complete run of the reliability suite, which rewrites docs/reliability.md
#   make soak   the soaks at full size (2 GiB transfers; make test runs them bounded)

SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
VENV_MIN := $(ROOT)/.venv-min
PY := $(VENV)/bin/python
# The newest Python >= 3.12 on this machine (ansible-core 2.20+ needs 3.12).
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 $$HOME/.pyenv/versions/3.14*/bin/python3 $$HOME/.pyenv/versions/3.13*/bin/python3 $$HOME/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3 python3; do \
	  c=$$(command -v $$p 2>/dev/null) || continue; \
	  $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null && { echo $$c; break; }; done)
# The oldest Python and ansible-core we claim in meta/runtime.yml.
PYTHON_MIN ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3; do \
	  c=$$(command -v $$p 2>/dev/null) || continue; \
	  $$c -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null && { echo $$c; break; }; done)
ANSIBLE_MIN ?= ansible-core>=2.20,<2.21
PYTEST_ARGS ?=

.PHONY: help system-deps venv venv-min collection-link demo test test-loaded test-min unit integration typecheck bench soak sanity lint clean reliability-report

help:
	@sed -n '1,8p' Makefile

system-deps:
	@bash tests/lab/install-system-packages.sh

$(VENV)/.installed: requirements.txt tests/requirements.txt
	@test -n "$(PYTHON)" || { echo "No Python >= 3.12 found: install python3.12 or newer (pyenv works) or set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -U pip
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r tests/requirements.txt
	@touch $@

collection-link:
	@mkdir -p build/collections/ansible_collections/pinned
	@ln -sfn ../../../.. build/collections/ansible_collections/pinned/winrm

venv: $(VENV)/.installed collection-link

$(VENV_MIN)/.installed: requirements.txt tests/requirements.txt
	@test -n "$(PYTHON_MIN)" || { echo "No Python 3.12 found for the oldest-version tests: install python3.12 or set PYTHON_MIN" >&2; exit 1; }
	@echo "Creating $(VENV_MIN) with $(PYTHON_MIN) and $(ANSIBLE_MIN)"
	@test -x $(VENV_MIN)/bin/python || $(PYTHON_MIN) -m venv $(VENV_MIN)
	@$(VENV_MIN)/bin/python -m pip install -q --disable-pip-version-check -U pip
	@grep -Ev '^ansible(-core)?[=<>~! ]' tests/requirements.txt | grep -v '^mitmproxy' > build/requirements-min.txt
	@$(VENV_MIN)/bin/python -m pip install -q --disable-pip-version-check '$(ANSIBLE_MIN)' -r requirements.txt -r build/requirements-min.txt
	@touch $@

venv-min: collection-link $(VENV_MIN)/.installed

demo: system-deps venv
	@$(PY) -m tests.demo

unit: venv
	@$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# mypy --strict on plugins/ (mypy.ini), as tests/unit/test_types.py runs it inside make test.
typecheck: venv
	@cd build/collections && $(PY) -m mypy --config-file $(ROOT)/mypy.ini --cache-dir $(ROOT)/build/mypy_cache \
	  -p ansible_collections.pinned.winrm.plugins

integration: system-deps venv
	@$(PY) -m pytest tests/integration -q $(PYTEST_ARGS)

# The oldest ansible-core/Python we claim: unit tests plus the end-to-end smoke run.
test-min: system-deps venv-min
	@LAB_MITM=0 $(VENV_MIN)/bin/python -m pytest tests/unit/plugins tests/integration/e2e -q -m "compat" $(PYTEST_ARGS)

test: system-deps venv venv-min
	@$(PY) -m pytest tests -q $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-min

# No test may depend on an idle machine (tests hold their moments with fault switches and events, never sleeps):
# the whole suite, LOADED_RUNS times in a row, while one busy loop per core competes with it.
LOADED_RUNS ?= 3
test-loaded: system-deps venv venv-min
	@bash tests/run-loaded.sh $(LOADED_RUNS) -- $(MAKE) --no-print-directory test

# The soaks at the sizes the issues name (make test runs them bounded): 2 GiB transfers beside 256 MiB.
soak: system-deps venv
	@PINNED_LARGE_FILE_MIB=256,2048 $(PY) -m pytest tests/integration -q -m soak $(PYTEST_ARGS)

# The only writer of docs/reliability.md: the whole reliability suite, unfiltered and at its default sizes (the
# report's plugin refuses to write after -x, -k, a node id or a deselection). `make test` never writes it: a unit
# test checks that it lists exactly the rows the suite declares.
reliability-report: system-deps venv
	@PINNED_RELIABILITY_REPORT=write $(PY) -m pytest tests/integration/reliability tests/unit/fuzz -q -p no:cacheprovider

bench: system-deps venv
	@$(PY) -m benchmarks.run

sanity: venv
	@bash tests/sanity/run.sh

# ansible-lint's production profile on the example playbooks, as tests/integration/ecosystem/test_tools.py runs it:
# on a copy, since ansible-lint writes its .ansible/ cache into the project it checks.
lint: venv
	@rm -rf build/lint && mkdir -p build/lint && cp -R examples .ansible-lint build/lint/
	@cd build/lint && env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY -u http_proxy -u https_proxy \
	  -u all_proxy -u no_proxy PATH="$(VENV)/bin:$$PATH" $(VENV)/bin/ansible-lint --offline --nocolor

clean:
	rm -rf build .pytest_cache tests/output

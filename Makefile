# Developer entry points. Run from the repository root (or with make -C).
#
#   make demo         run `flyte-state demo` against a local broker
#   make test         run the test suite (it starts its own broker)
#   make browser      install Debian's chromium for the dashboard's browser tests
#   make kafka-start  start the local broker (scripts/kafka-local start)
#   make kafka-stop   stop it
#   make clean        stop and delete local broker instances, delete .venv and state-data

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Touched after `pip install`. pip runs again when pyproject.toml is newer.
INSTALL_STAMP := $(VENV)/.installed
KAFKA_LOCAL := scripts/kafka-local

# Interpreter that creates the venv: python3.11 when on PATH, else python3.
# The venv recipe checks that it is Python 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)

PYTEST_ARGS ?=

.PHONY: help venv demo test browser kafka-start kafka-stop kafka-status clean

help:
	@echo "Targets:"
	@echo "  demo          run 'flyte-state demo' against a local broker, or KAFKA_BOOTSTRAP_SERVERS when set"
	@echo "  test          run pytest -v; set PYTEST_ARGS for extra arguments"
	@echo "  browser       install chromium with apt-get when /usr/bin/chromium is missing"
	@echo "  kafka-start   start the local broker (KAFKA_LOCAL_PORT, default 9092)"
	@echo "  kafka-stop    stop the local broker"
	@echo "  kafka-status  show whether the local broker runs"
	@echo "  clean         stop and delete every local broker instance, delete .venv and caches"

venv: $(INSTALL_STAMP)

$(VENV_PYTHON):
	@if [ -z "$(PYTHON)" ]; then \
	    echo "error: no python3.11 or python3 on PATH; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; \
	    exit 1; \
	fi
	@if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	    echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'), but the project needs 3.11; run 'make PYTHON=/path/to/python3.11'" >&2; \
	    exit 1; \
	fi
	"$(PYTHON)" -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -e '.[test]'
	touch $@

# Uses KAFKA_BOOTSTRAP_SERVERS when set. Otherwise it uses the local broker,
# starting it first when it is not running, and then stops only a broker that
# it started itself, also when the demo fails or is interrupted. The exit
# status is the demo's.
demo: $(INSTALL_STAMP)
	@if [ -n "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then \
	    echo "Running the demo against $$KAFKA_BOOTSTRAP_SERVERS"; \
	    exec $(VENV)/bin/flyte-state demo; \
	fi; \
	if ! $(KAFKA_LOCAL) status >/dev/null; then \
	    trap '$(KAFKA_LOCAL) stop' EXIT; \
	fi; \
	bootstrap="$$($(KAFKA_LOCAL) start)"; \
	echo "Running the demo against $$bootstrap"; \
	KAFKA_BOOTSTRAP_SERVERS="$$bootstrap" $(VENV)/bin/flyte-state demo

# pytest exits with 5 when it collects no tests. That fails the target like
# any other pytest failure, with a message that names the cause.
test: $(INSTALL_STAMP) browser
	@status=0; \
	$(VENV_PYTHON) -m pytest -v $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" -eq 5 ]; then \
	    echo "error: pytest collected no tests (exit status 5)" >&2; \
	fi; \
	exit "$$status"

# The dashboard's browser tests drive /usr/bin/chromium and skip without it.
# As root with apt-get, this installs Debian's package and fails when that
# fails; elsewhere it only prints that those tests will skip.
CHROMIUM := /usr/bin/chromium

browser:
	@if [ -x "$(CHROMIUM)" ]; then \
	    exit 0; \
	fi; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "note: $(CHROMIUM) is missing and installing it needs root and apt-get; the browser tests will skip" >&2; \
	    exit 0; \
	fi; \
	echo "Installing chromium with apt-get for the dashboard's browser tests"; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

kafka-start:
	$(KAFKA_LOCAL) start

kafka-stop:
	$(KAFKA_LOCAL) stop

kafka-status:
	$(KAFKA_LOCAL) status

# Keeps the downloaded broker jars in .local/kafka/libs.
clean:
	@for dir in .local/kafka/*/; do \
	    if [ -f "$$dir.kafka-local-instance" ]; then \
	        KAFKA_LOCAL_DIR="$$dir" $(KAFKA_LOCAL) reset; \
	    fi; \
	done
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
	@# The worker's RocksDB state belongs to the brokers' changelog topics,
	@# which the resets above deleted.
	rm -rf state-data
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Two commands matter: `make demo` and `make test`. Both set everything up on a fresh Debian 12.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSTEM_DEMO := python3-venv
SYSTEM_TEST := python3-venv clickhouse-server clickhouse-client espeak-ng sox chromium
SYSTEM_TEST += prometheus-alertmanager prometheus
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench lint system-demo system-test

$(STAMP): pyproject.toml
	scripts/bootstrap.sh $(SYSTEM_DEMO)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-test:
	scripts/bootstrap.sh $(SYSTEM_TEST)

demo: install
	$(VENV)/bin/voxwatch demo

# the ingest tests' real senders (Pipecat, LiveKit Agents): a test extra, not needed by `make demo`
$(VENV)/.installed-ingest-test: pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,ingest-test]'
	touch $@

test: install $(VENV)/.installed-ingest-test system-test
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# Everything that does not need a system package: quick inner loop.
test-fast: install
	$(PY) -m pytest -q -m "not server and not media and not browser" $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/voxwatch bench all --json

lint: install
	$(VENV)/bin/ruff check .

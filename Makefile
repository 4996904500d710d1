# socialcare — one command to run, one to test. Needs only Python 3.11 on the machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080

.PHONY: run test install install-test heads bench clean help

help:
	@echo "make run    create .venv, install, migrate the SQLite database, start on http://127.0.0.1:$(PORT)"
	@echo "make test   create .venv with the test tools and run the whole test suite"
	@echo "make heads  retrain the bundled triage heads from ../shared/data"
	@echo "make bench  run the benchmarks (bench/*.py print JSON)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: this exact CPU build lies on the machine's disk; anything else pulls GBs.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/socialcare db upgrade
	$(BIN)/socialcare run --port $(PORT)

# the browser tests drive Debian's Chromium (Playwright does not download a browser here)
test: install-test
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

heads: install
	$(BIN)/python -m triage.train_default

bench: install
	$(BIN)/python bench/triage.py
	$(BIN)/python bench/pipeline.py --mode embedded --triage cascade --n 2000

clean:
	rm -rf $(VENV) var .pytest_cache

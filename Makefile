# The two commands a newcomer needs:
#   make run   - set up, migrate, load the seed data into SQLite (var/duban.sqlite3), serve on :5000
#   make test  - set up, lint, type-check, run the whole test suite on SQLite and PostgreSQL
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup bench clean

$(BIN)/duban: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Browser tests drive Debian's Chromium (Playwright never downloads a browser).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk

setup: $(BIN)/duban $(CHROMIUM)

run: setup
	$(BIN)/duban serve --demo

test: setup
	scripts/test.sh

# Every performance figure in one run: bench/results/report.md (+ report.json). The full sizes
# take a while on 2 cores; `make bench BENCH_ARGS=--quick` is the quick check.
bench: setup
	$(BIN)/python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info

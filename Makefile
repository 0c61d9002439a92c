# GridOps: `make demo` sets everything up and serves http://127.0.0.1:8000;
# `make test` sets everything up and runs lint + the test suite.
# System packages (PostgreSQL 15, PostGIS 3, pgRouting, GDAL) are installed by
# `gridops db up` when missing and running as root; otherwise it prints the apt command.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
GRIDOPS := $(BIN)/gridops

.PHONY: demo test lint db serve clean-db help

help:
	@echo "make demo   - install everything, start PostGIS, migrate, load the demo, serve :8000"
	@echo "make test   - install everything, run ruff, mypy and the tests"

# -- Python environment ------------------------------------------------------------
$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "GridOps needs Python 3.11"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  [ "$$(id -u)" = 0 ] && apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); \
	} || { echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# -- Front-end dependencies (MapLibre GL JS, served locally) ---------------------------
web/node_modules/.package-lock.json: web/package-lock.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update && apt-get install -y nodejs npm; } \
	  || { echo "npm is missing: install Node.js 20 (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix web --no-audit --no-fund
	@touch $@

deps: $(VENV)/.installed web/node_modules/.package-lock.json
.PHONY: deps

# -- Browser for the page tests (Debian's Chromium + CJK fonts; Playwright drives it) --
BROWSER_PACKAGES := chromium fonts-noto-cjk
browser:
	@missing=$$(for p in $(BROWSER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y --no-install-recommends $$missing; \
	  else echo "missing: $$missing; run: sudo apt-get install $$missing"; exit 1; fi; \
	fi
.PHONY: browser

# -- Database ------------------------------------------------------------------------
db: deps
	$(GRIDOPS) db migrate

# -- The two commands ----------------------------------------------------------------
demo: db
	$(GRIDOPS) demo load
	# a month of synthetic 日巡 patrols in 广外 and 太平桥 for the evaluation (adds only missing days)
	$(GRIDOPS) demo patrols --days 30
	# demo teams drive around (fresh positions for the map and recommendations) while it serves
	$(GRIDOPS) demo simulate --interval 15 > .gridops/simulate.log 2>&1 & sim=$$!; \
	trap 'kill $$sim' EXIT INT TERM; $(GRIDOPS) serve

lint: deps
	$(BIN)/ruff check gis api tests migrations
	$(BIN)/mypy

test: lint browser
	$(GRIDOPS) db up
	$(BIN)/pytest -q

clean-db: deps
	$(GRIDOPS) db down --purge

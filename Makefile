# One command to reproduce (`make demo`), one to test (`make test`); both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
UI_HOST ?= 127.0.0.1
UI_PORT ?= 4200
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ACTIVATE := source $(BIN)/activate

.DEFAULT_GOAL := help
.PHONY: help install browser demo test lint run ui bench clean-demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns that folders named like a package may shadow it (flows/, tasks/...):
	@# they are the package, installed editable on purpose.
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m runtime.vega  # the page `dvc plots show` draws into, Vega inlined
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned, tested dependency set

demo: install ## run the whole DAG (`dvc repro`) on the built-in demo corpus, print metrics
	@start=$$(date +%s); \
	$(ACTIVATE) && msaflow repro && \
	echo && cat reports/summary_demo.md && \
	echo "make demo: $$(( $$(date +%s) - start )) s" && \
	echo "Next: in a new shell, run 'source $(BIN)/activate' first (msaflow, dvc, prefect)."

browser: ## headless Chromium for the HTML report's browser test (Debian's package; as root)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian's package) for the HTML report's browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium >/dev/null) || echo "chromium not installed: its test will be skipped"; \
	  else echo "no chromium, and no root to install it: the browser test will be skipped"; \
	  fi; }

test: install browser ## ruff + the whole test suite (CPU)
	$(ACTIVATE) && ruff check . && pytest -q --durations=12

lint: install ## ruff only
	$(ACTIVATE) && ruff check .

run: install ## the whole DAG as one Prefect flow run (`msaflow run`)
	$(ACTIVATE) && msaflow run

ui: install ## start a Prefect server with its UI on http://127.0.0.1:4200 (UI_HOST=0.0.0.0, UI_PORT=...)
	$(ACTIVATE) && prefect server start --host $(UI_HOST) --port $(UI_PORT) --analytics-off

bench: install ## run every benchmark in benchmarks/ (prints figures and ratios)
	$(ACTIVATE) && for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b; done

clean-demo: ## remove the demo's generated data and reports (DVC can rebuild them)
	rm -rf data/raw/demo data/interim/demo data/processed/demo data/checkpoints/demo reports/demo reports/summary_demo.md

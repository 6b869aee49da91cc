# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench system-deps clean

$(BIN)/newsletter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/newsletter pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# axe-core, which the browser tests inject into Chromium to check WCAG 2.2 AA (package.json).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --silent

demo: $(BIN)/newsletter
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

system-deps:
	@bash scripts/install-system-deps.sh

test: $(VENV)/.test-installed node_modules/.package-lock.json system-deps
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy
	eval "$$(bash scripts/start-postgres.sh)" && NEWSLETTER_TEST_REQUIRE_PG=1 \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy

bench: $(VENV)/.test-installed system-deps
	@bash scripts/install-bench-deps.sh
	@for b in bench/bench_*.py bench/simulate_scanners.py; do echo "== $$b"; PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache

# eventscope: `make run` (dashboard on sample data) and `make test` (everything, real brokers).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8501
# Broker jars fetched for the tests and the demo stay inside the checkout.
export EVENTSCOPE_CACHE_DIR ?= $(CURDIR)/.cache

.PHONY: run test bench demo install system-deps record clean mutation cli-docs

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@# byte-compiled once here: a process that compiles what it imports (where
	@# PYTHONDONTWRITEBYTECODE keeps it from saving the result) starts 1.4 s slower and 18 MiB bigger
	$(BIN)/python -m compileall -q -j 0 eventscope collectors graph pages simulator >/dev/null
	@touch $(STAMP)

## Every program the tests run (scripts/system-programs.tsv: Graphviz, Redis 7 and Sentinel, openssl,
## RabbitMQ, Chromium, Java, Maven, Node.js, from Debian), the Kafka broker jars (Maven Central), the AsyncAPI parser (npm)
system-deps: install
	@scripts/install_system_deps.sh
	@$(BIN)/python -m eventscope.localbrokers install kafka >/dev/null
	@scripts/install_asyncapi.sh

run: install
	$(BIN)/eventscope dashboard --port $(PORT)

test: install system-deps
	STRICT_REAL_BROKERS=1 $(BIN)/python -m pytest

bench: install system-deps
	$(BIN)/python -m bench

demo: install system-deps
	$(BIN)/eventscope demo --port $(PORT)

## Re-record sample_data/ from the simulator on real brokers (about 6 minutes)
record: install system-deps
	$(BIN)/python scripts/record_sample.py

## Mutation testing of the core modules against the fast unit tests (README, "Testing"); one
## worker, so it leaves a core free. All of it takes hours: MUTANTS='eventscope.analysis.lag.*'
## narrows it to a module (mutmut's mutant names are module.function globs).
MUTANTS ?=
mutation: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/mutmut results

cli-docs: install
	$(BIN)/python -c "from eventscope.cli import reference; open('docs/cli.md', 'w').write(reference())"

clean:
	rm -rf .eventscope artifacts .pytest_cache mutants

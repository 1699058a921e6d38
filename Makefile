# eventscope: `make run` (dashboard on sample data) and `make test` (everything, real brokers).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8501

.PHONY: run test bench demo install system-deps record clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile --no-deps -e .
	@touch $(STAMP)

## Redis 7 (Debian), Chromium (Debian), the Kafka broker jars (Maven Central) and the AsyncAPI parser (npm)
system-deps:
	@scripts/install_redis.sh
	@scripts/install_chromium.sh
	@scripts/install_kafka.sh
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

clean:
	rm -rf .eventscope artifacts .pytest_cache

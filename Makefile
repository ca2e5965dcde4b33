# Samtal's entry points. A fresh machine needs only Python 3.11+: uv is installed with pip
# when missing, and uses the machine's Python (it cannot download interpreters here).
PYTHON ?= python3
UV := $(PYTHON) -m uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
RUN := $(UV) run --frozen --all-packages

.PHONY: help uv install lint typecheck test test-fast schemas docs bench run demo up clean

help:
	@echo "make run | demo | test | install | lint | schemas | bench"

# The whole platform on this machine behind the gateway (Ctrl-C stops it).
# REPLICAS=2 (or REPLICAS=matching=2,catalog=3): api replicas behind the gateway.
# FRESH=1: start from an empty database.
REPLICAS ?= 1
run: install
	$(RUN) samtal-deploy run --replicas $(REPLICAS) $(if $(FRESH),--fresh)

# A guided journey through the gateway against `make run` (in another terminal).
demo: install
	$(RUN) samtal-deploy demo

uv:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"

install: uv
	$(UV) sync --frozen --all-packages

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	$(RUN) mypy contracts/src chassis/src $(wildcard services/*/src) deploy/src

# Lint plus every test, against a real Postgres and a real Kafka-protocol broker, with
# branch coverage of contracts, chassis and the services (settings in pyproject.toml).
test: lint
	$(RUN) pytest --cov --cov-report=term

test-fast: install
	$(RUN) pytest -x -q

schemas: install
	$(RUN) python -m contracts.schemas

# Regenerate what is generated from the code: README's settings, deploy manifests and topics.
docs: install
	$(RUN) samtal-deploy settings-doc --write
	$(RUN) samtal-deploy generate

# The platform in containers with real Apache Kafka (needs a Docker engine; none runs here).
up: install
	$(RUN) samtal-deploy gateway local
	docker compose -f deploy/compose.yaml up --build

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(RUN) python $$b || exit 1; done

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

# orderbus — the two commands a newcomer needs are `make run` and `make test`.
# Both install and start RabbitMQ and PostgreSQL first if they are missing or stopped.

SHELL := /bin/bash
# Builds live outside the clone so repeated runs (and CI on the same machine) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/orderbus/target
CARGO ?= cargo

.PHONY: help run test services build schemas schemas-check lint fmt fmt-check clippy unit bench soak sqlx-tool sqlx-prepare sqlx-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: services build ## start the whole local stack and print where to look
	@scripts/run.sh

test: services fmt-check sqlx-check clippy deploy-check unit ## everything CI checks: fmt, offline query metadata, clippy, manifests, all tests against the real broker and database

services: ## install (Debian packages) and start RabbitMQ + PostgreSQL if needed
	@scripts/ensure-services.sh

build: ## build every crate and binary
	$(CARGO) build --workspace --all-targets

unit:
	$(CARGO) test --workspace --doc -q
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

schemas: ## regenerate schemas/ (JSON Schemas + AsyncAPI) from the message types
	$(CARGO) run -q -p orderbus-contracts --bin orderbus-schemas -- schemas

schemas-check: ## fail if schemas/ differs from what the types generate
	$(CARGO) run -q -p orderbus-contracts --bin orderbus-schemas -- --check schemas

lint: fmt-check clippy ## rustfmt check + clippy with warnings as errors

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

bench: services ## throughput/latency ratios against bare lapin baselines (not a test)
	@scripts/bench.sh

# R18 (not in `make test`): 30 minutes by default; e.g. `make soak SOAK_ARGS="--minutes 3
# --reset-every-secs 60"`, and `SOAK_ARGS=--help` for every knob.
SOAK_ARGS ?=
soak: services ## R18 soak: the delivery chain at half its max for 30 min, a connection reset every 5 min (own broker node; not a test)
	$(CARGO) run --release -q -p orderbus-bench --bin orderbus-soak -- $(SOAK_ARGS)

# The sqlx query macros are checked at compile time against `.sqlx/` (committed offline metadata),
# so builds need no database. After changing a query or a migration, regenerate it.
SQLX_CLI_VERSION := 0.9.0
sqlx-tool:
	@command -v sqlx >/dev/null 2>&1 || { echo "==> installing sqlx-cli $(SQLX_CLI_VERSION) (once)"; \
		$(CARGO) install sqlx-cli --version $(SQLX_CLI_VERSION) --no-default-features --features postgres,rustls --locked; }

sqlx-prepare: services sqlx-tool ## regenerate .sqlx/ (offline query metadata) after changing SQL or migrations
	DATABASE_URL=$$(scripts/sqlx-db.sh) $(CARGO) sqlx prepare --workspace -- --all-targets

sqlx-check: sqlx-tool ## fail if .sqlx/ is not what the current queries and migrations produce
	DATABASE_URL=$$(scripts/sqlx-db.sh) $(CARGO) sqlx prepare --workspace --check -- --all-targets

# --- Kubernetes manifests (deploy/) ---------------------------------------------------------
# Offline: no cluster. The Python validators live in a venv next to the clone's sources.
DEPLOY_VENV ?= .venv-deploy
# Every service deployed to Kubernetes: services/* except the dev/test-only ones.
DEPLOY_SERVICES := $(filter-out erp-sim sandbox,$(notdir $(wildcard services/*)))

.PHONY: deploy-gen deploy-check deploy-tools image

deploy-tools: $(DEPLOY_VENV)/.installed ## the offline manifest validators (venv; fast when installed)

$(DEPLOY_VENV)/.installed: deploy/tools/requirements.txt
	@command -v kubectl >/dev/null 2>&1 || { echo "deploy-tools: kubectl (for kustomize) is not installed" >&2; exit 1; }
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r deploy/tools/requirements.txt
	@touch $@

deploy-gen: ## regenerate deploy/ topology, permissions and queue alerts from the code
	$(CARGO) run -q -p orderbus-e2e --bin orderbus-deploy-gen -- deploy

deploy-check: deploy-tools ## validate deploy/ offline: generated files current, kustomize, schemas, lint, env vars
	$(CARGO) run -q -p orderbus-e2e --bin orderbus-deploy-gen -- --check deploy
	$(CARGO) build -q --bins $(addprefix -p orderbus-,$(DEPLOY_SERVICES))
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(DEPLOY_VENV)/bin/python deploy/tools/deploy_check.py

# No container daemon or registry needed: buildah assembles the image from a debootstrap base
# (Debian's packages) and the release binaries, then runs a service's --help in it.
image: ## build the service image (release binaries, buildah + debootstrap) and run --help in it
	$(CARGO) build --release --locked --bins $(addprefix -p orderbus-,$(DEPLOY_SERVICES))
	deploy/tools/build-image.sh $(CARGO_TARGET_DIR) $(DEPLOY_SERVICES)

# The storefront's HTTP fuzz test (tests/storefront/fuzz.rs) drives schemathesis against the
# running server from its OpenAPI document. The tool lives in a venv beside the build outputs
# (outside the clone, reused between runs); `unit` installs it first so `make test` runs it.
FUZZ_TOOLS_DIR := $(CARGO_TARGET_DIR)/fuzz-tools
SCHEMATHESIS_VERSION := 4.32.5
.PHONY: fuzz-tools
fuzz-tools: ## install schemathesis (the HTTP fuzzer) into $(CARGO_TARGET_DIR)/fuzz-tools
	@test -x $(FUZZ_TOOLS_DIR)/bin/schemathesis || { echo "==> installing schemathesis $(SCHEMATHESIS_VERSION) (once)"; \
		python3 -m venv $(FUZZ_TOOLS_DIR) && \
		$(FUZZ_TOOLS_DIR)/bin/pip install -q "schemathesis==$(SCHEMATHESIS_VERSION)"; }

unit: fuzz-tools

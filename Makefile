# TraceTrack — the front door. `make help` lists the targets.
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= auto

.PHONY: help run test lint fmt fmt-check proto db-up db-down db-status build clean-local

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

run: ## Start Postgres, Redis and every service locally; Ctrl-C stops everything
	@bash scripts/run.sh

test: ## Run the whole test suite (starts Postgres and Redis itself)
	@bash scripts/test.sh

lint: ## rustfmt check and clippy -D warnings
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

proto: ## Recompile the protos (cargo does this on build; this forces it)
	touch proto/build.rs && cargo build -p tracetrack-proto

build: ## Build every binary (debug)
	cargo build --workspace --bins

db-up: ## Start the local Postgres and Redis (installs them when missing)
	@bash scripts/stack.sh up

db-down: ## Stop the local Postgres and Redis
	@bash scripts/stack.sh down

db-status: ## Are the local Postgres and Redis running?
	@bash scripts/stack.sh status

clean-local: db-down ## Stop the stack and delete its data (.local/)
	rm -rf .local

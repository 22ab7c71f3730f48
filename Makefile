# TraceTrack — the front door. `make help` lists the targets.
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= auto

.PHONY: help run test lint fmt fmt-check proto db-up db-down db-status build clean-local

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

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

.PHONY: k8s-render deploy-check

k8s-render: ## Render the k8s overlays (.local/k8s/) and validate them, compose and the Dockerfile offline
	@bash deploy/k8s-render.sh

deploy-check: k8s-render ## k8s-render, build the image's binaries as its Dockerfile does, check the DB role split
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-.local/deploy-target} bash deploy/docker/build-binaries.sh fetch
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-.local/deploy-target} bash deploy/docker/build-binaries.sh build .local/image-bin
	bash deploy/roles-check.sh .local/image-bin

.PHONY: bench bench-smoke chaos

bench: ## Seed (BENCH_BAGS, default 4,000,000) and run the benchmark profile on a release build; appends to BENCHMARKS.md
	@bash scripts/bench.sh

bench-smoke: ## A short smoke of the benchmark tool (debug build, 50,000 bags, own ports), for CI
	@bash scripts/bench-smoke.sh

chaos: ## Whole-stack fault suite: private stack, retrying scanners, SIGKILL of each service, Redis, Postgres; SQL checks, report in .local/chaos/report.md
	@bash scripts/chaos.sh

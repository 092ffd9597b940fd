.DEFAULT_GOAL := all
VENV := .venv
BIN := $(VENV)/bin

.PHONY: all bootstrap run test lint format typecheck bench clean

all: lint typecheck test

bootstrap:
	@scripts/bootstrap

# The platform on http://127.0.0.1:8000 (bootstrapping first: venv, Docker, image);
# SQLite under .assay/. Ctrl+C stops it; queued work survives a restart.
run: bootstrap
	$(BIN)/assay doctor
	$(BIN)/assay serve --host 127.0.0.1 --port 8000

# Every test: unit, integration and security, against the real Docker engine; then the
# contract and security suites again with every sandbox under gVisor (runsc), and each
# language's cases that gVisor can change (hello, the limits, the compiler's limits), and
# live sandboxes.
test:
	@scripts/bootstrap --test
	$(BIN)/pytest
	ASSAY_TEST_RUNTIME=runsc $(BIN)/pytest tests/integration/test_contract.py tests/security
	ASSAY_TEST_RUNTIME=runsc $(BIN)/pytest tests/integration/test_live_sandboxes.py -k local
	ASSAY_TEST_RUNTIME=runsc $(BIN)/pytest tests/integration/test_languages.py \
	  -k "(hello and not every_path) or limit or flood or numpy or versions"

lint:
	@scripts/bootstrap --python-only
	$(BIN)/ruff check src tests bench scripts/register-runsc scripts/derive-seccomp
	$(BIN)/ruff format --check src tests bench scripts/register-runsc scripts/derive-seccomp
	$(BIN)/lint-imports

format:
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck:
	@scripts/bootstrap --python-only
	$(BIN)/mypy

bench: bootstrap
	$(BIN)/python bench/engine_latency.py
	$(BIN)/python bench/platform_overhead.py
	$(BIN)/python bench/remote_overhead.py
	$(BIN)/python bench/cold_path.py
	$(BIN)/python bench/warm_pool.py
	$(BIN)/python bench/batch_isolation.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/runtimes.py
	$(BIN)/python bench/languages.py
	$(BIN)/python bench/sandboxes.py
	$(BIN)/python bench/fresh_sandbox_cpu.py
	$(BIN)/python bench/humaneval_peers.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache test-artifacts

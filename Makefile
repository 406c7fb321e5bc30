# memlake — every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
VENV = $(shell infra/bootstrap.sh)
PY = $(VENV)/bin/python
export PYTHONUNBUFFERED := 1
# Tests and the demo keep their state apart from a developer's own runs.
TEST_HOME ?= $(CURDIR)/.memlake-test

.PHONY: venv up down status demo demo-shell demo-down test test-unit test-integration bench bench-full bench-report lint fmt clean

venv:
	@infra/bootstrap.sh

up: ## start the local Kafka broker (KRaft)
	@$(VENV)/bin/memlake up

down: ## stop it
	@$(VENV)/bin/memlake down

status:
	@$(VENV)/bin/memlake status

demo: ## the main job end to end on the local defaults
	@bash infra/demo.sh

demo-shell: ## a shell on the demo's broker and state
	@bash infra/demo.sh shell

demo-down: ## stop the demo's broker
	@bash infra/demo.sh down

test: ## unit + integration tests; starts and stops its own broker
	@venv=$$(infra/bootstrap.sh) && MEMLAKE_HOME=$(TEST_HOME) $$venv/bin/python -m pytest -q

test-unit:
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/python -m pytest -q -m "not integration"

bench: ## every benchmark, quick profile; rewrites BENCHMARKS.md
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/python -m benchmarks run --profile quick

bench-full:
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/python -m benchmarks run --profile full

bench-report: ## rewrite BENCHMARKS.md from the recorded quick results, running nothing
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/python -m benchmarks report --profile quick

lint:
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/ruff check . && $$venv/bin/ruff format --check . && $$venv/bin/mypy

fmt:
	@venv=$$(infra/bootstrap.sh) && $$venv/bin/ruff format . && $$venv/bin/ruff check --fix .

clean:
	rm -rf $(TEST_HOME) .pytest_cache .mypy_cache .ruff_cache

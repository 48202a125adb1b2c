# The template's own tasks. `make help` lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEMPLATE := {{cookiecutter.project_slug}}
# Quiets the banner that mkdocs-material 9.7+ prints on every build about its successor.
export NO_MKDOCS_2_WARNING := 1

.DEFAULT_GOAL := help
.PHONY: help install test docs demo bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create .venv with the template's tools and the baked service's dependencies

$(VENV)/.installed: pyproject.toml $(TEMPLATE)/pyproject.toml tools/baked_requirements.py tests/variants.py cookiecutter.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --group dev
	$(BIN)/python -m tools.baked_requirements $(VENV)/baked-requirements.txt > /dev/null
	$(BIN)/python -m pip install --quiet -r $(VENV)/baked-requirements.txt
	@touch $@

test: install ## Lint the template's tests and hooks, then bake every variant and test what comes out
	$(BIN)/ruff check tests hooks tools benchmarks
	$(BIN)/ruff format --check tests hooks tools benchmarks
	$(BIN)/mypy --strict hooks
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -n auto

docs: install ## Serve the docs site on http://127.0.0.1:8001, rebuilt on every change
	$(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8001

demo: install ## Bake the default answers into ./demo/ and run its `make dev`
	@test -d demo/my-service || $(BIN)/cookiecutter --no-input --output-dir demo .
	$(MAKE) -C demo/my-service dev

bench: ## Benchmark the service and its session layer against their peers on PostgreSQL, with every target (about 15 minutes; BENCH_ARGS=--quick for a smoke run)
	$(PYTHON) benchmarks/run.py $(BENCH_ARGS)

clean: ## Remove the virtualenv, the demo and caches
	rm -rf $(VENV) demo site .pytest_cache .ruff_cache .mypy_cache

# landmark-pipeline: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?= web
EPOCHS ?=
IMAGE_SIZE ?=
STORAGE ?= storage
CONFIG ?=
ARGS ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export TF_CPP_MIN_LOG_LEVEL ?= 2

RUN_FLAGS := --source $(SOURCE) --storage $(STORAGE) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) \
	$(if $(CONFIG),--config $(CONFIG)) $(ARGS)

.DEFAULT_GOAL := help
.PHONY: help install run refresh train test lint format bench server deploy worker serve up down clean-venv

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed ## Create .venv and install the project with its dev tools

run: install ## Whole pipeline (SOURCE=web|DIR, EPOCHS=N, IMAGE_SIZE=N, CONFIG=file, ARGS=...)
	$(BIN)/landmarks run $(RUN_FLAGS)

refresh: install ## Dataset refresh only: get images, clean, dedup, split, augment
	$(BIN)/landmarks refresh --source $(SOURCE) --storage $(STORAGE) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

train: install ## Train and evaluate on the current split (EPOCHS=N)
	$(BIN)/landmarks train --storage $(STORAGE) $(if $(EPOCHS),--epochs $(EPOCHS)) $(ARGS)

test: install ## Run the test suite
	$(BIN)/python -m pytest -q

lint: install ## ruff (lint + format check) and mypy on the core
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy landmarks

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Benchmarks on ../shared/datasets/landmarks-real
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

server: install ## Start a local Prefect server (API + UI + services) on 127.0.0.1:4200
	$(BIN)/prefect server start --host 127.0.0.1

deploy: install ## Work pool, concurrency limits and the deployments of prefect.yaml
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/landmarks deploy

worker: install ## A process worker for the `landmarks` pool (runs the deployments)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} \
		$(BIN)/prefect worker start --pool landmarks --type process

serve: install ## Deployments served from one process, no pool or worker
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/landmarks serve

up: ## docker compose: postgres, redis, Prefect server + services, deploy, worker
	docker compose up -d --build

down: ## Stop the docker compose services
	docker compose down

clean-venv: ## Remove the virtual environment
	rm -rf $(VENV)

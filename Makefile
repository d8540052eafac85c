# b24sign — two commands on a fresh machine:  `make run`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The test suite runs on real PostgreSQL and Redis (127.0.0.1:5432 / :6379, see conftest.py).
PYTEST_ARGS ?=

.PHONY: run test lint test-reliability demo bench install deps check clean browser

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

deps: $(BIN)/.installed

## run: the web app, a Celery worker and Celery beat with embedded defaults (SQLite, filesystem broker)
run: deps
	@mkdir -p var
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	@echo "b24sign on http://127.0.0.1:$(PORT)/  (Ctrl-C stops web, worker and beat)"
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM EXIT; \
	DEBUG=$${DEBUG:-1} $(BIN)/celery -A config worker --loglevel=INFO --concurrency=2 --pool=threads & \
	DEBUG=$${DEBUG:-1} $(BIN)/celery -A config beat --loglevel=INFO & \
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver 127.0.0.1:$(PORT) --noreload & \
	wait

## demo: one sale end to end against the bundled Bitrix24 and signNow emulators (throwaway state, ~10 s)
demo: deps
	$(BIN)/python -m demo

## test: the linters, then the whole suite (unit, integration against emulators, reliability, browser)
test: deps browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: layers import one way (import-linter, .importlinter) and ruff (ruff.toml: no imports inside functions)
lint: deps
	$(BIN)/lint-imports
	$(BIN)/ruff check .

## test-reliability: only the fault-injection suite
test-reliability: deps
	$(BIN)/python -m pytest tests/reliability $(PYTEST_ARGS)

## browser: Debian's Chromium for the Playwright tests (installed when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for browser tests"; \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null) || \
	  echo "WARNING: chromium could not be installed; browser tests will be skipped"; }

check: deps
	DEBUG=1 $(BIN)/python manage.py check

clean:
	rm -rf var $(VENV)

# The two commands a new user needs: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint docs digest-example periods-example clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the bot with its development tools

run: install  ## start the bot on the embedded database (demo data when empty, Slack offline without a token)
	$(BIN)/acr-bot demo --if-empty
	$(BIN)/acr-bot serve

# Two test workers a core: most tests spend their time waiting for a server process, PostgreSQL or the disk. One test
# at a time to each worker (--maxschedchunk 1) and slow tests first (tests/conftest.py): the long ones start early.
TEST_WORKERS := $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
PARALLEL := -n $(TEST_WORKERS) --maxschedchunk 1

test: install  ## run every test (in parallel, two workers per core), the store tests on SQLite and on a throwaway PostgreSQL (skipped, loudly, without one)
	scripts/pg-test-server $(BIN)/pytest -q $(PARALLEL)

test-fast: install  ## the inner loop: every test but those marked slow, in parallel (about a minute and a half on two cores)
	$(BIN)/pytest -q $(PARALLEL) -m "not slow"

lint: install  ## ruff and mypy (mypy checks bot, metrics, tests and bench: pyproject.toml)
	$(BIN)/ruff check bot metrics tests bench
	$(BIN)/ruff format --check bot metrics tests bench
	$(BIN)/mypy

docs: install  ## regenerate docs/cli.md from the commands' --help
	$(BIN)/cog -r -I . docs/cli.md

digest-example: install  ## render the README's digest example from demo data: docs/digest-example.md and .png
	$(BIN)/python -m bot.scheduler.example docs

periods-example: install  ## render the README's weekly digest and chart reply examples from demo data into docs/
	$(BIN)/python -m bot.period_examples docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

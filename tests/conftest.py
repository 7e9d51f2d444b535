"""Shared fixtures: a fresh store on every backend (``store``, ``database_url``), the fake Slack (``fake``) and the
real Slack server running on it (``slack_server``), and settings that never read the developer's .env or shell.
Contacts are built with ``tests/builders.py`` (plain functions: Hypothesis strategies use them too)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from bot.storage import ContactStore, open_store
from metrics.engine import compute
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, slack_settings
from tests.store_support import EXTERNAL, STORE_BACKENDS, TEST_DATABASE_URL, Databases, skip_reason

# Every variable a setting is read from (pydantic-settings: the field name, in any case), so a new setting
# is isolated the day it is added.
SETTINGS_VARIABLES = tuple(name.upper() for name in Settings.model_fields)

pytest_plugins = ("tests.platform_support",)  # start_app: the real app under uvicorn, for the platform webhooks


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests run in an empty directory (no .env) with no bot settings inherited from the shell."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "acr.db"


@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=[pytest.mark.external_service] if name in EXTERNAL else [])
        for name in STORE_BACKENDS
    ]
)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases of one store backend; every test that uses a store runs once per backend."""
    made = STORE_BACKENDS[request.param](tmp_path)
    yield made
    made.close()


@pytest.fixture
def database_url(databases: Databases) -> str:
    """The URL of a new, empty database (an external backend's needs TEST_DATABASE_URL)."""
    return databases.fresh_url()


@pytest.fixture
def store(database_url: str) -> Iterator[ContactStore]:
    """A new, migrated store on each backend (a real SQLite file; a real server for the others)."""
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def new_store(databases: Databases) -> Iterator[Callable[[], ContactStore]]:
    """Opens another new store on the same backend, each on its own database; closed after the test."""
    opened: list[ContactStore] = []

    def make() -> ContactStore:
        opened.append(open_store(databases.fresh_url()))
        return opened[-1]

    yield make
    for each in opened:
        each.close()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """A running fake of the Slack Web API and of response_url endpoints, for one test."""
    with FakeSlack() as running:
        yield running


@pytest.fixture
def slack_server(fake: FakeSlack, database_url: str) -> Iterator[Callable[..., SlackServer]]:
    """Starts the real HTTP server with the Slack routes on ``fake``: ``slack_server(store, **settings)``
    (``compute_fn=`` replaces the engine); every server started is stopped after the test."""
    with ExitStack() as started:

        def start(store: ContactStore, *, compute_fn: Any = compute, **overrides: Any) -> SlackServer:
            config = slack_settings(database_url, fake.api_url, **overrides)
            return started.enter_context(SlackServer(config, store, compute_fn))

        yield start


def pytest_report_header() -> str:
    """Say which store backends run, so that a skipped one is never a surprise."""
    header = f"store backends: {', '.join(STORE_BACKENDS)}"
    if EXTERNAL and not os.environ.get(TEST_DATABASE_URL):
        header += f" ({TEST_DATABASE_URL} is not set: the {', '.join(sorted(EXTERNAL))} store tests are skipped)"
    return header


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty schema on the PostgreSQL server of TEST_DATABASE_URL (for tests only PostgreSQL
    has: several processes on one database); skipped, saying how to run it, without one."""
    made = STORE_BACKENDS["postgresql"](tmp_path)
    yield made.fresh_url()
    made.close()


SLOW_SECONDS = 5.0  # a test that takes longer carries the `slow` marker (`make test-fast` leaves it out)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (otherwise in file order): under ``pytest -n`` the workers share out the long ones at the
    start and the short ones fill the end, instead of one worker finishing a minute-long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly, at the end, when the tests of an external backend did not run, and name the tests that took
    longer than SLOW_SECONDS without the `slow` marker."""
    unmarked = sorted(
        (report.duration, report.nodeid)
        for report in terminalreporter.stats.get("passed", [])
        if report.when == "call" and report.duration > SLOW_SECONDS and "slow" not in report.keywords
    )
    if unmarked:
        terminalreporter.write_sep("-", f"{len(unmarked)} tests took over {SLOW_SECONDS:g} s without the slow marker")
        for duration, nodeid in reversed(unmarked):
            terminalreporter.write_line(f"{duration:6.1f} s  {nodeid}")
    for name in sorted(EXTERNAL):
        reason = skip_reason(name)
        skipped = [r for r in terminalreporter.stats.get("skipped", []) if reason in str(r.longrepr)]
        if skipped:
            terminalreporter.write_sep("!", f"{len(skipped)} {name} tests SKIPPED: {reason}", red=True)

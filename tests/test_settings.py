"""Settings: read from the environment and .env, validated at start, documented in .env.example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, load_settings
from metrics.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    config = load_settings()
    assert config.database_url == "sqlite:///data/acr.db"
    assert config.bot_timezone == "UTC" and config.port == 3000 and config.host == "127.0.0.1"
    assert config.webhook_secret is None and config.slack_bot_token is None


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("BOT_TIMEZONE=Europe/Berlin\nPORT=4000\nWEBHOOK_SECRET=s3cret\n")
    monkeypatch.setenv("PORT", "5000")
    config = load_settings()
    assert config.bot_timezone == "Europe/Berlin" and config.port == 5000
    assert config.webhook_secret is not None and config.webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOT_TIMEZONE", "Mars/Olympus", "BOT_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ("PORT", "http", "PORT: Input should be a valid integer"),
        ("PORT", "70000", "PORT: Input should be less than or equal to 65535"),
        ("DATABASE_URL", "mysql://db/acr", "DATABASE_URL: 'mysql' is not a supported database"),
        ("SLACK_API_URL", "slack.com/api", "SLACK_API_URL: 'slack.com/api' is not an http(s) URL"),
    ],
)
def test_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_cli_refuses_to_start_with_a_bad_setting(tmp_path: Path) -> None:
    """The edge shows one `Error:` line and no traceback."""
    result = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "report", "acr"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"BOT_TIMEZONE": "Nowhere/Land", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    if "No such command" in result.stderr:
        pytest.skip("report command not registered")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: BOT_TIMEZONE: unknown time zone 'Nowhere/Land' (use an IANA name such as Europe/Berlin)"
    ]


def test_env_example_documents_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    for name in documented:  # every setting has a comment line right above it
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if re.match(rf"^#?\s*{name}=", line))
        assert lines[index - 1].startswith("#"), f"{name} has no comment in .env.example"

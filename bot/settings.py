"""One Settings object, read from the environment and ``.env`` and validated once at start."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metrics.errors import UserError
from metrics.timeutil import load_zone


class Settings(BaseSettings):
    """Every setting of the bot. ``.env.example`` documents each one; a test keeps the two in step."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True, frozen=True
    )

    database_url: str = "sqlite:///data/acr.db"
    bot_timezone: str = "UTC"
    webhook_secret: SecretStr | None = None
    webhook_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_supervisor_ids: str = ""
    slack_supervisor_group: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    http_max_connections: int = Field(default=1000, ge=1)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Processes that decode platform webhook requests (bot/platforms/decoding.py); unset: the cores but one, at
    # most 4; 0: in the server's own process.
    platform_decode_workers: int | None = Field(default=None, ge=0, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    sqlite_readers: int = Field(default=4, ge=1, le=64)
    sqlite_cache_mib: int = Field(default=64, ge=1, le=1_048_576)
    scheduler_enabled: bool = True
    scheduler_lease_poll_seconds: float = Field(default=10.0, gt=0, le=60)
    digest_grace_hours: float = Field(default=6.0, ge=0, le=24 * 7)
    digest_min_sample: int = Field(default=30, ge=1)
    alert_interval_minutes: int = Field(default=60, ge=1, le=24 * 60)
    alert_hysteresis_points: float = Field(default=2.0, ge=0, le=50)
    retention_days: int | None = Field(default=None, ge=1)
    mask_customer_ids: bool = True
    contact_url_template: str | None = None
    target_acr: float | None = Field(default=None, gt=0, le=100)
    target_tier1: float | None = Field(default=70.0, gt=0, le=100)
    # Amazon Connect (bot/platforms/amazon_connect.py): the Firehose stream's access key, and the contact
    # attributes that hold a customer id (else the phone number or address), a reason, resolved and escalated.
    connect_firehose_access_key: SecretStr | None = None
    connect_customer_attribute: str | None = None
    connect_reason_attribute: str | None = None
    connect_resolved_attribute: str | None = None
    connect_escalated_attribute: str | None = None
    # Zendesk (bot/platforms/zendesk.py): the webhook's signing secret.
    zendesk_webhook_secret: SecretStr | None = None
    # Intercom (bot/platforms/intercom.py): the app's client secret, which signs its webhook notifications.
    intercom_client_secret: SecretStr | None = None
    # Chatwoot (bot/platforms/chatwoot.py): the webhook's secret (Chatwoot 4.11.2 and later sign webhooks).
    chatwoot_webhook_secret: SecretStr | None = None
    # Twilio Flex / TaskRouter (bot/platforms/twilio.py): the account's auth token, and the server's public base URL
    # (Twilio signs the URL it calls; behind a proxy the server cannot know it).
    twilio_auth_token: SecretStr | None = None
    public_url: str | None = None

    @field_validator("bot_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            load_zone(value)
        except UserError as problem:
            raise ValueError(str(problem)) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        from bot.storage import check_database_url  # the backends' table (imported here: no cycle at start-up)

        return check_database_url(value)

    @field_validator("contact_url_template")
    @classmethod
    def _has_id(cls, value: str | None) -> str | None:
        if value is not None and ("{id}" not in value or not value.startswith(("http://", "https://"))):
            raise ValueError(f"{value!r} must be an http(s) URL with {{id}} where the contact id goes")
        return value

    @field_validator("target_acr", "target_tier1", mode="before")
    @classmethod
    def _no_target(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("off", "none") else value

    @field_validator("log_level", "sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL (like https://acr.example.com)")
        return value.rstrip("/") if value is not None else None

    @field_validator("slack_supervisor_ids")
    @classmethod
    def _slack_user_ids(cls, value: str) -> str:
        for user_id in _split_ids(value):
            if not _SLACK_USER_ID.fullmatch(user_id):
                raise ValueError(f"{user_id!r} is not a Slack user id (like U0123ABCD)")
        return value

    @property
    def supervisor_ids(self) -> frozenset[str]:
        """The Slack user ids named in SLACK_SUPERVISOR_IDS (comma or space separated)."""
        return frozenset(_split_ids(self.slack_supervisor_ids))

    def target(self, metric: str) -> float | None:
        """The metric's target as a fraction (TARGET_ACR / TARGET_TIER1 are percents), or None when unset."""
        percent = self.target_acr if metric == "acr" else self.target_tier1
        return None if percent is None else percent / 100

    @cached_property
    def zone(self) -> ZoneInfo:
        return load_zone(self.bot_timezone)

    @property
    def database_path(self) -> Path:
        """The SQLite file named by ``sqlite:///relative`` or ``sqlite:////absolute``."""
        return Path(self.database_url.removeprefix("sqlite:///"))


_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def _split_ids(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text.strip()) if part]


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; a bad value becomes one UserError line naming the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as invalid:
        problems = []
        for error in invalid.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise UserError("; ".join(problems)) from None

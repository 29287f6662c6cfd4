"""Service configuration, read from environment variables (every CLI option has one)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from floyo_pipeline.schedule import parse_schedule


class Wakeup(StrEnum):
    NOTIFY = "notify"
    REALTIME = "realtime"
    POLL = "poll"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """All settings; the env var of each field is its name in upper case (prefix FLOYO_ unless noted)."""

    model_config = SettingsConfigDict(env_prefix="FLOYO_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    supabase_url: HttpUrl | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_service_role_key: SecretStr | None = Field(
        default=None, validation_alias="SUPABASE_SERVICE_ROLE_KEY"
    )
    wakeup: Wakeup = Wakeup.NOTIFY
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=9091, ge=0, le=65535)
    http_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    log_format: LogFormat = LogFormat.JSON
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    max_row_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    lease_ttl_seconds: float = Field(default=15.0, ge=1, le=3600)
    shutdown_grace_seconds: float = Field(default=25.0, gt=0, le=3600)
    max_concurrency: int = Field(default=6, ge=1, le=256)
    readers_per_stream: int = Field(default=4, ge=1, le=64)
    data_dir: Path = Path(".floyo")
    replica_id: str | None = Field(default=None, min_length=1, max_length=200)
    retention_schedule: str = "0 2 * * *"
    metrics_snapshot_schedule: str = "0 */6 * * *"
    allow_superuser: bool = False
    consumers: str = Field(default="consumers:all_consumers", pattern=r"^[\w.]+:\w+$")

    @field_validator("supabase_url", "supabase_service_role_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An empty env var (SUPABASE_SERVICE_ROLE_KEY=) means "not configured", not an empty key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgres:// or postgresql:// connection string")
        return value

    @field_validator("retention_schedule", "metrics_snapshot_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return parse_schedule(value).text

    @model_validator(mode="after")
    def _realtime_needs_supabase(self) -> Settings:
        if self.wakeup is Wakeup.REALTIME:
            if self.supabase_url is None:
                raise ValueError("SUPABASE_URL is required when FLOYO_WAKEUP=realtime")
            if self.supabase_service_role_key is None:
                raise ValueError("SUPABASE_SERVICE_ROLE_KEY is required when FLOYO_WAKEUP=realtime")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    if any(f.validation_alias == field for f in Settings.model_fields.values()):
        return field  # pydantic reports aliased fields by their alias (the env var name)
    return f"FLOYO_{field.upper()}"


def describe_error(err: ValidationError) -> str:
    """One line naming the first bad variable and what is wrong with it (never its value)."""
    first = err.errors()[0]
    loc = first.get("loc") or ()
    message = str(first.get("msg", "invalid value"))
    if loc:
        return f"invalid configuration: {_env_name(str(loc[0]))}: {message}"
    return f"invalid configuration: {message.removeprefix('Value error, ')}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, with CLI overrides on top; raises ConfigError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as err:
        raise ConfigError(describe_error(err)) from None

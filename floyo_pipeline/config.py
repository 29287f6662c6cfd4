"""Service configuration, read from environment variables (every CLI option has one)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def _check_port(port: str) -> None:
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("the port must be a number from 1 to 65535 (percent-encode / ? # @ in a password)")


def check_postgres_url(url: str) -> None:
    """Raise ValueError saying what is wrong with a connection string (never quoting it)."""
    if not url.startswith(("postgres://", "postgresql://")):
        raise ValueError("must be a postgres:// or postgresql:// connection string")
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
    except ValueError:
        raise ValueError("not a valid URL (an unbalanced [ in the host?)") from None
    # asyncpg takes libpq's form `host1:port1,host2:port2`; check every port it would parse.
    for host in parts.netloc.rpartition("@")[2].split(","):
        _check_port((host.rpartition("]")[2] if host.startswith("[") else host).partition(":")[2])
    for port in query.get("port", []):
        for one in port.split(","):
            _check_port(one)
    for mode in query.get("sslmode", []):
        if mode not in _SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(sorted(_SSLMODES))}")


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
    batch_size: int = Field(default=5000, ge=1, le=10_000)
    batch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    max_row_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    lease_ttl_seconds: float = Field(default=15.0, ge=1, le=3600)
    shutdown_grace_seconds: float = Field(default=25.0, gt=0, le=3600)
    max_concurrency: int = Field(default=6, ge=1, le=256)
    readers_per_stream: int = Field(default=4, ge=1, le=64)
    embedded: bool = False
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    migrate_lock_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    data_dir: Path = Path(".floyo")
    # No '#': the engine names a process `<replica id>#<incarnation>`, and a replica id that looked
    # like another's incarnation would take over its leases and jobs.
    replica_id: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^#]+$")
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
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_postgres_url(value.get_secret_value())
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
        if self.embedded and self.database_url is not None:
            raise ValueError("DATABASE_URL and FLOYO_EMBEDDED=true are both set: choose one database")
        return self


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
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if loc:
        return f"invalid configuration: {_env_name(str(loc[0]))}: {message}"
    return f"invalid configuration: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, with CLI overrides on top; raises ConfigError."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as err:
        raise ConfigError(describe_error(err)) from None

"""certfleet's settings: `CERTFLEET_*` environment variables, everything under one data directory."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTFLEET_", extra="ignore")

    data_dir: Path = Field(default=Path("~/.certfleet"), description="Holds the database, key file, Prefect home")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to SQLite in the data directory"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key for secrets at rest; defaults to the key file in the data dir"
    )
    secret_key_file: Path | None = Field(default=None, description="Where the key file lives (mode 0600)")
    prefect_port: int = Field(default=4200, description="Port of the embedded Prefect server and UI")
    prefect_auth_string: SecretStr | None = Field(
        default=None,
        description="The Prefect API's auth string; generated, stored encrypted and printed once when unset",
    )
    host: str = Field(default="127.0.0.1", description="Address the embedded services listen on")
    demo_fleet: bool = Field(default=True, description="Create the demo fleet on the first `certfleet up`")
    retry_base_delay_s: float = Field(default=5.0, description="First retry delay of CA calls; doubles each time")
    verify_timeout_s: float = Field(default=15.0, description="How long a deployment waits to see its serial")
    bot_silence_minutes: float = Field(
        default=15.0, gt=0, description="A bot with no heartbeat for this long is shown Inactive (check-bots flow)"
    )
    prefect_public_url: str | None = Field(
        default=None, description="Prefect API URL as bots on other hosts reach it (default: the local one)"
    )
    bot_heartbeat_seconds: float = Field(default=30.0, description="How often a bot agent checks in")
    dashboard_port: int = Field(default=8080, description="Port of the web dashboard and the /api/v1 JSON API")
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the first admin user; generated and printed once when unset"
    )
    session_hours: float = Field(default=12.0, description="How long a dashboard login lasts")

    @property
    def home(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'certfleet.db'}"

    @property
    def key_file(self) -> Path:
        return (self.secret_key_file or self.home / "secret.key").expanduser()

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def prefect_auth_file(self) -> Path:
        """The generated Prefect auth string, sealed with the secret key (mode 0600)."""
        return self.home / "prefect-auth-string.sealed"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

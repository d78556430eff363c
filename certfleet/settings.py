"""certfleet's settings: `CERTFLEET_*` environment variables, everything under one data directory."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTFLEET_", extra="ignore")

    data_dir: Path = Field(default=Path("~/.certfleet"), description="Holds the database, key file, Prefect home")
    _home: Path | None = PrivateAttr(default=None)
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
    public_url: str | None = Field(
        default=None,
        description="The dashboard's address as clients reach it (e.g. http://certfleet.example.org:8080): the "
        "built-in CA names <public_url>/crl/<connector id>.crl as the CRL Distribution Point of what it issues",
    )
    metrics_max_certificates: int = Field(
        default=10_000,
        ge=0,
        description="/metrics gives the soonest-expiring this many certificates their own expiry series; the rest "
        "are counted in certfleet_certificates_beyond_cap (and in the days-to-expiry counts)",
    )
    renewal_stale_minutes: float = Field(
        default=180.0,
        gt=0,
        description="The dead man's switch: notify 'renewal schedule did not run' when renew-expiring has not run to "
        "its end for this long (it is scheduled hourly)",
    )
    discovery_stale_hours: float = Field(
        default=50.0,
        gt=0,
        description="Notify 'discovery did not run' when no discovery run has completed for this long (discover-fleet "
        "runs daily); only once one has completed",
    )
    notify_check_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the dashboard process itself looks for notification events and sends the outbox "
        "(besides the check-notifications flow), so alerts go out with the Prefect worker down; 0: never",
    )
    bot_heartbeat_seconds: float = Field(default=30.0, description="How often a bot agent checks in")
    dashboard_port: int = Field(default=8080, description="Port of the web dashboard and the /api/v1 JSON API")
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the first admin user; generated and printed once when unset"
    )
    allow_custom_commands: bool = Field(
        default=False,
        description="Let Admins give servers free-form config-test/reload commands (run on every deploy, as root "
        "with sudo); off: only the known commands of each server type",
    )
    session_hours: float = Field(default=12.0, description="How long a dashboard login lasts")
    aia_fetch: bool = Field(
        default=False,
        description="Let imports fetch missing intermediates from the CA Issuers URLs in certificates (outbound HTTP)",
    )
    aia_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Timeout of each CA Issuers request")
    # Web hardening: request size limits, login throttling, TLS awareness.
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest JSON or form body the dashboard/API reads (else 413)"
    )
    max_upload_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest multipart upload (imports, CA connector files)"
    )
    max_upload_files: int = Field(default=100, gt=0, description="Most files one upload may carry")
    login_max_failures: int = Field(
        default=5, gt=0, description="Failed logins for one username before it is locked out"
    )
    login_address_max_failures: int = Field(
        default=20, gt=0, description="Failed logins from one address before it is locked out"
    )
    login_lockout_minutes: float = Field(
        default=15.0, gt=0, description="How long a lockout lasts; failures older than this are forgotten"
    )
    behind_tls: bool = Field(
        default=False, description="Browsers reach certfleet over HTTPS (a TLS proxy): Secure cookies, HSTS"
    )
    maintenance_deadline_days: float = Field(
        default=7,
        ge=0,
        description="A deployment to a server with a maintenance window goes at once, window or not, when the "
        "certificate the server serves expires within this many days",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1",
        description="Comma-separated proxy addresses whose X-Forwarded-Proto/-For are believed ('' = none)",
    )

    @property
    def home(self) -> Path:
        # Resolved once per settings object: every session asks for the database URL, and resolve() walks the path.
        if self._home is None:
            self._home = self.data_dir.expanduser().resolve()
        return self._home

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


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700; an existing directory is left as it is.

    The data directory holds the database, the key file and Prefect's state: no other user may list it.
    """
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            path.mkdir(mode=0o700)
            path.chmod(0o700)  # mkdir's mode is filtered by the umask; say it exactly
    return path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

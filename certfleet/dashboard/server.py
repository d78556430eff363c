"""Running the dashboard: the first admin, and uvicorn in a background thread (for `certfleet up`) or in front."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from certfleet.dashboard.services.users import FirstAdmin, ensure_first_admin
from certfleet.models.db import session_scope
from certfleet.notifications.timer import NotificationTimer
from certfleet.settings import get_settings


def ensure_admin() -> FirstAdmin | None:
    """Creates `admin` on the first start (password from CERTFLEET_ADMIN_PASSWORD, else generated and returned)."""
    secret = get_settings().admin_password
    with session_scope() as s:
        return ensure_first_admin(s, secret.get_secret_value() if secret else None)


def proxy_options() -> dict[str, Any]:
    """uvicorn believes X-Forwarded-Proto/-For (https, the client address) only from CERTFLEET_TRUSTED_PROXIES."""
    trusted = [p.strip() for p in get_settings().trusted_proxies.split(",") if p.strip()]
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


def url(host: str | None = None, port: int | None = None) -> str:
    s = get_settings()
    return f"http://{host or s.host}:{port or s.dashboard_port}"


class DashboardThread:
    """uvicorn serving create_app() from a daemon thread; `start()` returns once it accepts connections."""

    def __init__(self, host: str, port: int) -> None:
        from certfleet.dashboard.app import create_app

        config = uvicorn.Config(
            create_app(), host=host, port=port, log_level="warning", access_log=False, **proxy_options()
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="certfleet-dashboard", daemon=True)
        # The dashboard process checks for notification events itself, so they go out with Prefect down.
        self.notifications = NotificationTimer(get_settings().notify_check_seconds)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(
                    f"the dashboard did not start on port {self.server.config.port}: is the port taken? "
                    "Set CERTFLEET_DASHBOARD_PORT to a free port"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start within {timeout:.0f} s")
            time.sleep(0.05)
        self.notifications.start()

    def stop(self) -> None:
        self.notifications.stop()
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_forever(host: str, port: int) -> None:
    from certfleet.dashboard.app import create_app

    timer = NotificationTimer(get_settings().notify_check_seconds).start()
    try:
        uvicorn.run(create_app(), host=host, port=port, log_level="info", **proxy_options())
    finally:
        timer.stop()

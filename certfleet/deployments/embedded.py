"""The embedded Prefect server: a `prefect server start` child process on SQLite in the data directory.

It requires the auth string on every API call (PREFECT_SERVER_API_AUTH_STRING); only /health answers
anyone, which is how certfleet tells "a Prefect server answers here" from "this port is taken".
"""

from __future__ import annotations

import enum
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from certfleet.deployments.api import auth_headers


class EmbeddedServerError(RuntimeError):
    """The Prefect server did not come up; the message carries the end of its log."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


class Access(enum.Enum):
    OPEN = "open"  # answers anyone: the server has no auth string
    GRANTED = "granted"  # refuses anonymous calls, accepts ours
    REFUSED = "refused"  # refuses ours (or we have none)


def api_access(api_url: str, auth_string: str | None) -> Access:
    """What a Prefect API says to `auth_string` and to an anonymous caller (a cheap read-only call each)."""

    def status(headers: dict[str, str]) -> int:
        return httpx.get(f"{api_url}/admin/version", headers=headers, timeout=5.0, trust_env=False).status_code

    if status({}) != 401:
        return Access.OPEN
    if auth_string and status(auth_headers(auth_string)) != 401:
        return Access.GRANTED
    return Access.REFUSED


class EmbeddedPrefect:
    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 4200, *, auth_string: str | None = None
    ) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.auth_string = auth_string
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "prefect-server.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 240.0) -> bool:
        """Start the server, or attach to one already answering on the port. Returns True if started here.

        Attaching to a server that refuses our auth string raises: nothing certfleet does would work there.
        A first start migrates a new database: minutes, not seconds, on a busy two-core machine.
        """
        if healthy(self.api_url):
            if api_access(self.api_url, self.auth_string) is Access.REFUSED:
                held = "a different one" if self.auth_string else "none"
                raise EmbeddedServerError(
                    f"the Prefect server on {self.host}:{self.port} requires an auth string and certfleet has "
                    f"{held}: set CERTFLEET_PREFECT_AUTH_STRING to that server's auth string"
                )
            return False
        if port_in_use(self.host, self.port):
            raise EmbeddedServerError(
                f"port {self.port} on {self.host} is taken by something that is not a Prefect server; "
                "set CERTFLEET_PREFECT_PORT to a free port"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.environment(os.environ)
        argv = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedServerError(f"the Prefect server exited at start: {self._log_tail()}")
            if healthy(self.api_url):
                return True
            time.sleep(0.3)
        self.stop()
        raise EmbeddedServerError(f"the Prefect server did not answer within {timeout:g} s: {self._log_tail()}")

    def environment(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """The server process's environment: no client settings, our home, our auth string, analytics off."""
        env = {k: v for k, v in inherited.items() if not k.startswith(("PREFECT_API_", "PREFECT_SERVER_API_"))}
        # Analytics stay off (an offline install logs an ERROR per attempt) unless the operator turned them on.
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
            PREFECT_UI_API_URL=self.api_url,
        )
        if self.auth_string is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        return env

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except FileNotFoundError:
            return "no log written"

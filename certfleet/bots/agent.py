"""`certfleet bot run --url URL --token cfb_...`: certfleet's agent inside a network.

It checks in with its bot token (version, OS, IP address), receives its configuration (Prefect API and auth
string, work pool and queue), and runs a Prefect process worker on its own queue `bot-<id>`. The worker's flow
runs get certfleet's URL and the token in their environment, and fetch everything else (the bundle, the
server's credentials) from certfleet's API: a bot holds no database URL and no secret key. It keeps checking
in; a Stopped bot's queue is kept paused (by certfleet, when it answers a check-in). A refused token (wrong,
revoked, replaced) ends the agent with a one-line reason and exit status 2, after the runs in progress have
ended (they fail and put back what they changed).
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from certfleet import __version__
from certfleet.bots.queues import QueueError, prefect_headers, set_paused
from certfleet.deployments.api import PLACEHOLDER_TRUST_FILE
from certfleet.deployments.workers import WorkerProcess
from certfleet.jobs.store import AGENT_CA_BUNDLE_ENV, AGENT_TOKEN_ENV, AGENT_URL_ENV, api_trust

EXIT_REFUSED = 2
# What a bot must not inherit, even if the host that runs it has them set.
CENTRAL_ONLY = ("CERTFLEET_DATABASE_URL", "CERTFLEET_SECRET_KEY", "CERTFLEET_SECRET_KEY_FILE")


class AgentRefused(RuntimeError):
    """certfleet refused the bot token."""


@dataclass(frozen=True)
class AgentOptions:
    url: str
    token: str
    work_dir: Path
    ca_bundle: str | None = None
    limit: int = 8  # concurrent flow runs on this bot
    heartbeat_seconds: float | None = None  # None: what certfleet says


def host_os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')[:80]
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"[:80]


def address_towards(url: str) -> str | None:
    """The local address this host uses to reach certfleet (no packet is sent: UDP connect only routes)."""
    parts = urlsplit(url)
    try:
        with socket.socket(
            socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET, socket.SOCK_DGRAM
        ) as s:
            s.connect((parts.hostname or "127.0.0.1", parts.port or 443))
            return str(s.getsockname()[0])
    except OSError:
        return None


class Agent:
    def __init__(
        self, options: AgentOptions, *, say: Callable[[str], None] = print, client: httpx.Client | None = None
    ) -> None:
        self.options = options
        self.say = say
        self.client = client or httpx.Client(
            base_url=options.url.rstrip("/"),
            headers={"Authorization": f"Bearer {options.token}"},
            timeout=httpx.Timeout(15.0, connect=10.0),
            verify=api_trust(options.ca_bundle),
            trust_env=False,
        )
        self.stopping = threading.Event()
        self.worker: WorkerProcess | None = None
        self.paused = False  # as the last check-in said

    def check_in(self) -> dict[str, Any]:
        body = {"version": __version__, "os": host_os(), "ip_address": address_towards(self.options.url)}
        response = self.client.post("/api/v1/bots/heartbeat", json=body)
        if response.status_code == 401:
            raise AgentRefused(f"certfleet refused the bot token: {_detail(response)}")
        response.raise_for_status()
        config: dict[str, Any] = response.json()
        return config

    def worker_env(self, config: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CENTRAL_ONLY}
        env.update(
            {
                AGENT_URL_ENV: self.options.url,
                AGENT_TOKEN_ENV: self.options.token,
                "PREFECT_API_URL": config["prefect_api_url"],
                "PREFECT_HOME": str(self.options.work_dir / "prefect"),
                "CERTFLEET_DATA_DIR": str(self.options.work_dir),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
        )
        if config.get("prefect_auth_string"):
            env["PREFECT_API_AUTH_STRING"] = config["prefect_auth_string"]
        if self.options.ca_bundle:
            env[AGENT_CA_BUNDLE_ENV] = self.options.ca_bundle
        if str(config["prefect_api_url"]).startswith("http://"):
            env.setdefault("PREFECT_API_SSL_CERT_FILE", str(PLACEHOLDER_TRUST_FILE))
        return env

    def keep_queue_state(self, config: dict[str, Any]) -> None:
        """Says when the queue's state changed. certfleet itself writes it when answering the check-in, with the
        bot's row locked (`certfleet.bots.queue_state`): an answer read just before an operator's Stop, applied
        here a moment later, would resume the queue Stop had just paused."""
        paused = bool(config["paused"])
        if paused != self.paused:
            self.say(f"queue {config['work_queue']} {'paused: the bot is Stopped' if paused else 'resumed'}")
        self.paused = paused
        if "not changed yet" in str(config.get("queue") or ""):
            self.say(f"warning: {config['queue']}")

    def run(self) -> int:
        """Until SIGTERM/SIGINT (exit 0) or a refused token (exit 2)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        config: dict[str, Any] | None = None
        try:
            config = self._check_in_until_answered()
            if config is None:
                return 0
            self.say(
                f"bot {config['name']} ({config['status']}): worker on {config['work_pool']}/{config['work_queue']}"
            )
            self.keep_queue_state(config)
            self.worker = WorkerProcess(
                config["work_pool"],
                config["work_queue"],
                name=f"certfleet-{config['work_queue']}",
                log_path=self.options.work_dir / "worker.log",
                limit=self.options.limit,
                env=self.worker_env(config),
            )
            self.worker.start()
            interval = self.options.heartbeat_seconds or float(config.get("heartbeat_seconds") or 30)
            while not self.stopping.wait(interval):
                config = self._check_in_until_answered() or config
                self.keep_queue_state(config)
                if not self.worker.running and not self.stopping.is_set():
                    self.say(f"the worker stopped (see {self.worker.log_path}); starting it again")
                    self.worker.start()
        except AgentRefused as exc:
            self.say(f"error: {exc}")
            if self.worker is not None and config is not None:
                self._drain(config)
            return EXIT_REFUSED
        finally:
            if self.worker is not None:
                self.worker.stop()
        return 0

    def _drain(self, config: dict[str, Any], timeout: float = 300.0) -> None:
        """Refused: take no new run (pause the queue) and let the runs in progress end on their own: each one
        fails at its next call to certfleet and puts back what it changed. Killing them could leave half a
        change on a server."""
        with contextlib.suppress(QueueError):
            set_paused(config["prefect_api_url"], config.get("prefect_auth_string"), config["work_queue"], True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and running_runs(config) > 0:
            time.sleep(1.0)

    def _check_in_until_answered(self) -> dict[str, Any] | None:
        """A certfleet that does not answer is waited for (its runs wait too); a refusal is final."""
        delay = 2.0
        while not self.stopping.is_set():
            try:
                return self.check_in()
            except httpx.HTTPError as exc:
                self.say(f"warning: certfleet at {self.options.url} does not answer ({exc}); retrying in {delay:g} s")
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 60.0)
        return None


def running_runs(config: dict[str, Any]) -> int:
    """Flow runs of this bot's queue that a worker has taken and not finished (unknown: counted as one)."""
    body = {
        "work_pool_queues": {"name": {"any_": [config["work_queue"]]}},
        "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
    }
    try:
        response = httpx.post(
            f"{str(config['prefect_api_url']).rstrip('/')}/flow_runs/count",
            json=body,
            headers=prefect_headers(config.get("prefect_auth_string")),
            timeout=10.0,
            trust_env=False,
        )
        return int(response.json()) if response.status_code == 200 else 1
    except (httpx.HTTPError, ValueError):
        return 1


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except (ValueError, AttributeError):
        return response.text[:200]

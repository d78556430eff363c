"""Prefect workers as child processes: the central host's two (`certfleet up`) and a bot's one (`certfleet bot run`).

A process worker polls its queue and starts each flow run in a process of its own, with the worker's
environment: that is how a bot's runs get certfleet's URL and the bot token without either ever being
written to Prefect. Workers poll every `POLL_SECONDS`: Prefect's default, 10 s, was most of a deploy's latency
from the click; at 1 s a run waits half a second on average, and a few workers' polls cost the Prefect server
little (benchmarks/latency.py measures both). PREFECT_WORKER_QUERY_SECONDS in the environment overrides it.

The worker is Prefect's process worker whose runs are forked from a process that has already imported Prefect
and certfleet (`warm_worker`, `warm_launcher`): starting a run then takes a fork instead of 2-3 s of imports.

A worker on the central host (`certfleet up`) is also woken: it listens on a Unix datagram socket in the data
directory (`wake/<queue>.sock`, named by CERTFLEET_WORKER_WAKE_SOCKET), and whoever starts a flow run on that host
(`starts.start_flow_run`: the dashboard, the CLI, a flow) sends every socket there an empty datagram, so the worker
polls at once instead of at its next poll. A datagram carries nothing and only makes the worker poll early; a
worker that cannot bind its socket (a path too long) only polls. A bot on another host is never woken: it polls.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

POLL_SECONDS = 1
WAKE_ENV = "CERTFLEET_WORKER_WAKE_SOCKET"
WAKE_DIR = "wake"  # in the data directory
_QUEUE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def wake_socket(home: Path, queue: str) -> Path:
    """Where the worker of `queue` on this host listens for a wake-up."""
    return home / WAKE_DIR / f"{_QUEUE_FILE_NAME.sub('_', queue)}.sock"


def wake_local_workers(home: Path | None = None) -> int:
    """Tell every worker of this host's data directory to poll now; returns how many were told (best effort:
    a worker that is not there or does not read is simply not woken, it polls anyway)."""
    if home is None:
        from certfleet.settings import get_settings

        home = get_settings().home
    told = 0
    try:
        sockets = sorted((home / WAKE_DIR).glob("*.sock"))
    except OSError:
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in sockets:
            with contextlib.suppress(OSError):  # gone, not listening, queue full, path too long
                sock.sendto(b"", str(path))
                told += 1
    return told


class WorkerProcess:
    def __init__(
        self,
        pool: str,
        queue: str,
        *,
        name: str,
        log_path: Path,
        limit: int = 8,
        env: Mapping[str, str] | None = None,
        wake: Path | None = None,
    ) -> None:
        """`wake`: the Unix socket the worker listens on for a wake-up (see `wake_socket`); None: it only polls."""
        self.pool, self.queue, self.name, self.limit = pool, queue, name, limit
        self.log_path = log_path
        self.extra_env = dict(env or {})
        if wake is not None:
            self.extra_env[WAKE_ENV] = str(wake)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "certfleet.deployments.warm_worker", "--pool", self.pool]
        argv += ["--work-queue", self.queue, "--name", self.name, "--limit", str(self.limit)]
        env = self.environment(os.environ)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def environment(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """The worker's (and so its flow runs') environment; the operator's PREFECT_WORKER_* settings win."""
        env = {**inherited, **self.extra_env}
        # Every flow run is a new Python process that imports Prefect and certfleet: without the bytecode cache
        # that costs about 7 s of CPU instead of 3 (measured here), so keep the cache even if the host disabled it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(POLL_SECONDS))
        env.setdefault("PREFECT_WORKER_HEARTBEAT_SECONDS", "15")
        return env

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM lets the worker hand back what it has not started; runs in progress end with it."""
        if not self.running:
            return
        assert self.process is not None
        self.process.terminate()
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

"""Prefect workers as child processes: the central host's two (`certfleet up`) and a bot's one (`certfleet bot run`).

A process worker polls its queue and starts each flow run in a process of its own, with the worker's
environment: that is how a bot's runs get certfleet's URL and the bot token without either ever being
written to Prefect. Workers poll every `POLL_SECONDS`: Prefect's default, 10 s, was most of a deploy's latency
from the click; at 1 s a run waits half a second on average, and a few workers' polls cost the Prefect server
little (benchmarks/latency.py measures both). PREFECT_WORKER_QUERY_SECONDS in the environment overrides it.

The worker is Prefect's process worker whose runs are forked from a process that has already imported Prefect
and certfleet (`warm_worker`, `warm_launcher`): starting a run then takes a fork instead of 2-3 s of imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

POLL_SECONDS = 1


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
    ) -> None:
        self.pool, self.queue, self.name, self.limit = pool, queue, name, limit
        self.log_path = log_path
        self.extra_env = dict(env or {})
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

"""Flows for tests/deployments/test_warm_worker.py: each writes what it saw to a file the test names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow


def _report(path: str, **more: object) -> None:
    from prefect.settings import get_current_settings

    seen = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "env": os.environ.get("WARM_TEST_VAR"),
        "retries": get_current_settings().tasks.default_retries,  # a Prefect setting the job's env sets
    }
    Path(path).write_text(json.dumps(seen | more))


@flow(name="warm-ok")
def ok(path: str) -> None:
    _report(path)


@flow(name="warm-crash")
def crash(path: str) -> None:
    _report(path)
    os._exit(3)  # the process ends without telling Prefect anything: a crash


@flow(name="warm-sleep")
def sleep(path: str, seconds: float) -> None:
    _report(path)
    time.sleep(seconds)

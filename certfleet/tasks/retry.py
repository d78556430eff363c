"""Retry policy for tasks that talk to CAs and servers.

`retry_if_transient` must stay a plain function: Prefect silently disables retries for partials and
callable objects. `retry_jitter_factor` does nothing for tasks in Prefect 3, so jitter is part of the
delays; they are drawn once per process, which still spreads the retries of different bots and workers.
"""

from __future__ import annotations

import random
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from certfleet.connectors.errors import TransientConnectorError


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientConnectorError:
        return True
    except Exception:
        return False
    return False


def backoff_with_jitter(base: float, retries: int, *, cap: float = 300.0, jitter: float = 0.25) -> list[float]:
    """Exponential delays (base, 2*base, 4*base, ...) capped, each stretched by up to `jitter`."""
    return [min(cap, base * 2**n) * (1 + random.uniform(0, jitter)) for n in range(retries)]  # noqa: S311

"""A deploy worker that SIGKILLs itself at a chosen point of `install_on_target`, as a worker dies.

    python -m tests.faults.deploy_worker CERTIFICATE_ID TARGET_ID POINT

POINT: `after-backup` (the first file's backup written, nothing replaced), `mid-install` (the first file
replaced, the second not: certificate and key do not match on disk), `before-reload` (every file replaced
and the config test passed; the reload never runs). The deployment id is printed before the install.
Settings (database, data directory) come from the environment, as for a real worker.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from certfleet.connectors.base import Backup, FileWrite, ServerHandler
from certfleet.jobs.models import TargetJob
from certfleet.jobs.store import JobStore
from certfleet.tasks import deployment

POINTS = ("after-backup", "mid-install", "before-reload")


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Dies:
    """The real handler, with the process killed at one point."""

    def __init__(self, handler: ServerHandler, point: str) -> None:
        self._handler = handler
        self._point = point

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)

    def snapshot(self, path: str, backup_path: str) -> Backup:
        backup = self._handler.snapshot(path, backup_path)
        if self._point == "after-backup":
            _die()
        return backup

    def install(self, write: FileWrite) -> None:
        self._handler.install(write)
        if self._point == "mid-install":
            _die()

    def activate(self) -> None:
        if self._point == "before-reload":
            _die()
        self._handler.activate()


def main(certificate_id: int, target_id: int, point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"POINT must be one of {', '.join(POINTS)}")
    real = deployment.build_handler

    def build_handler(job: TargetJob, store: JobStore | None = None) -> ServerHandler:
        return _Dies(real(job, store), point)  # type: ignore[return-value]

    deployment.build_handler = build_handler  # type: ignore[assignment]
    deployment_id = deployment.start_deployment.fn(certificate_id, target_id)
    print(deployment_id, flush=True)
    deployment.install_on_target.fn(deployment_id)
    raise SystemExit(f"the install finished: {point} was never reached")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

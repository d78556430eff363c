"""The check on a timer inside the dashboard process: notifications (the dead man's switch above all) go out
even when the Prefect server or its worker is down, as long as the dashboard runs."""

from __future__ import annotations

import logging
import threading

from certfleet.notifications.checks import run_check

log = logging.getLogger(__name__)


class NotificationTimer:
    """A daemon thread running `run_check()` every `interval_s` seconds (the first one interval after start)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="certfleet-notifications", daemon=True)
        self.checks = 0

    def start(self) -> NotificationTimer:
        if self.interval_s > 0:
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                counts = run_check()
            except Exception as exc:  # the next tick tries again; a database hiccup must not end the timer
                log.warning("notification check failed: %s: %s", type(exc).__name__, exc)
            else:
                if counts["queued"] or counts["sent"] or counts["failed"]:
                    log.info("notifications: %s", counts)
            self.checks += 1

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

"""A stage of rotate-batch holds its servers' turn: a slot of each server's `rotate-server-<id>`, taken in one call.

Taking a slot is a call to Prefect (and one more to renew the lease, one to give it back): 1-2 s a server on a busy
server, which rotate-batch paid once per server when each server task took its own slot. A stage takes a slot of
every server it deploys to from this process in one call instead (Prefect grants all or none, so two batches
never hold part of each other's servers and wait for the rest in a circle) and gives them back when it ends: a
second batch on one of those servers waits until this stage is over. A holder thread keeps the slots (Prefect
renews their lease from it); when Prefect can no longer renew the lease, the stage's slots are lost and its
server tasks start nothing more (`check`).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterable
from types import TracebackType
from uuid import UUID

from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease
from sqlalchemy import select

from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, DeploymentTarget, RotationItem, Server
from certfleet.tasks.rotation import server_limit

WAKE_S = 0.5  # how often the holder wakes: an exception Prefect raises in it (lease not renewed) lands then
PART = 500  # items asked about at once (bound parameters of one query)
LEASE_S = 300.0  # Prefect's default: renewed from the holder every 225 s
_log = logging.getLogger(__name__)


class SlotsLost(RuntimeError):
    """Prefect could not renew the lease of the stage's server slots: other batches may start on those servers."""


class LimitMissing(RuntimeError):
    """A server's `rotate-server-<id>` does not exist: the stage would not hold that server's turn."""


def _give_back(lease_id: UUID) -> None:
    try:
        release_concurrency_slots_with_lease(lease_id)
    except Exception as exc:  # e.g. the lease was lost: Prefect lets it run out
        _log.warning("server slots of lease %s not given back: %s", lease_id, exc)


def local_servers(item_ids: Iterable[int]) -> set[int]:
    """The servers of the targets of the items' certificates that this process deploys to (those of the central
    host's bot): a certificate's other targets may be on servers of their own."""
    ids = sorted(set(item_ids))
    servers: set[int] = set()
    with session_scope() as s:
        for start in range(0, len(ids), PART):
            servers.update(
                s.scalars(
                    select(DeploymentTarget.server_id)
                    .join(RotationItem, RotationItem.certificate_id == DeploymentTarget.certificate_id)
                    .join(Server, Server.id == DeploymentTarget.server_id)
                    .join(Bot, Bot.id == Server.bot_id)
                    .where(RotationItem.id.in_(ids[start : start + PART]), Bot.name == LOCAL_BOT_NAME)
                    .distinct()
                )
            )
    return servers


class StageSlots:
    """One slot of each server's limit, held from `__enter__` (which waits for all of them) to `__exit__`."""

    def __init__(self, server_ids: Iterable[int]) -> None:
        self.server_ids = frozenset(server_ids)
        self.lost: BaseException | None = None
        self._granted = threading.Event()
        self._done = threading.Event()
        self._holder: threading.Thread | None = None

    def __enter__(self) -> StageSlots:
        if not self.server_ids:
            return self
        self._holder = threading.Thread(
            target=contextvars.copy_context().run,  # this run's Prefect settings (API URL)
            args=(self._hold,),
            name="hold-rotate-server",
            daemon=True,
        )
        self._holder.start()
        try:
            self._granted.wait()
        except BaseException:  # e.g. the run was cancelled while waiting: the holder gives them back once granted
            self._done.set()
            raise
        if self.lost is not None:  # refused (a limit is missing) or Prefect failed: nothing was taken
            self._release()
            raise self.lost
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def check(self) -> None:
        """Raises once the slots are lost: the servers' turn is no longer this batch's."""
        if self.lost is not None:
            raise SlotsLost(f"server slots of this stage lost: {self.lost!r}") from self.lost

    def _hold(self) -> None:
        names = [server_limit(s) for s in sorted(self.server_ids)]
        try:
            # What Prefect's `concurrency()` does (without its events), and a check it does not make: of several
            # names, a missing limit is skipped silently (strict refuses only when none of them exists).
            granted = acquire_concurrency_slots_with_lease(names, 1, lease_duration=LEASE_S, strict=True)
            try:
                missing = sorted(set(names) - {limit.name for limit in granted.limits})
                if missing:
                    raise LimitMissing(f"no concurrency limit {', '.join(missing)}: create it before the batch")
                with maintain_concurrency_lease(granted.lease_id, LEASE_S, raise_on_lease_renewal_failure=True):
                    self._granted.set()
                    while not self._done.wait(WAKE_S):
                        pass
            finally:
                _give_back(granted.lease_id)
        except BaseException as exc:
            if not self._done.is_set():
                self.lost = exc
        finally:
            self._granted.set()

    def _release(self) -> None:
        self._done.set()
        if self._holder is not None:
            self._holder.join()

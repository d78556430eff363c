"""The one interface through which server-side tasks read their job and write the deployment journal.

Two implementations: `DbJobStore` (certfleet.jobs.db_store) on the central host, where the database is, and
`ApiJobStore` (certfleet.jobs.api_store) on a bot, which calls certfleet's API with the bot's token; the API
routes call `DbJobStore` after checking that the server belongs to that bot. `current_store()` picks one by the
environment the worker gave the flow run, so every task has exactly one code path.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING, Any, Protocol

from certfleet.connectors.base import CertificateBundle
from certfleet.jobs.models import JournalStep, Opened, RestorePlan, ServerAccess, StaleBackup, TargetJob
from certfleet.models.orm import DeploymentStatus, StepState

if TYPE_CHECKING:
    from certfleet.servers.service import CheckOutcome, ConnectivityResult

AGENT_URL_ENV = "CERTFLEET_AGENT_URL"  # certfleet's base URL, set by `certfleet bot run` for its worker
# The bot token: only in the bot worker's environment, never in Prefect (parameters, results, logs).
AGENT_TOKEN_ENV = "CERTFLEET_AGENT_TOKEN"  # noqa: S105 (the variable's name, not a secret)
AGENT_CA_BUNDLE_ENV = "CERTFLEET_AGENT_CA_BUNDLE"  # trust file for certfleet's TLS certificate, if private


def api_trust(ca_bundle: str | None) -> ssl.SSLContext:
    """How a bot verifies certfleet's API: the given trust file (a private CA), else the system's."""
    if not ca_bundle:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:  # ssl's own message names no file
        raise ValueError(
            f"cannot use the CA bundle {ca_bundle} ({exc.strerror or exc}): give a PEM file with the CA "
            "certificate that issued certfleet's TLS certificate"
        ) from exc


class JobStore(Protocol):
    def certificate_targets(self, certificate_id: int) -> list[int]:
        """The certificate's targets on servers this process may reach (a bot: its own servers)."""
        ...

    def target_job(self, certificate_id: int, target_id: int) -> TargetJob: ...

    def open_deployment(
        self, certificate_id: int, target_id: int, previous_serial: str | None, flow_run_id: str | None
    ) -> int:
        """Checks the certificate can be deployed there and nothing else runs on the target; returns its id."""
        ...

    def deployment_job(self, deployment_id: int) -> TargetJob: ...

    def bundle(self, deployment_id: int) -> CertificateBundle: ...

    def journal(
        self,
        deployment_id: int,
        action: str,
        path: str | None = None,
        backup_path: str | None = None,
        undo: dict[str, Any] | None = None,
    ) -> int:
        """Records a change before it is made; returns the step id. `undo`: a change that is no file replacement
        (an IIS binding) records what puts it back, measured before it runs."""
        ...

    def update_step(
        self,
        step_id: int,
        *,
        state: StepState | None = None,
        existed_before: bool | None = None,
        detail: str | None = None,
    ) -> None: ...

    def finish(self, deployment_id: int) -> list[StaleBackup]:
        """Marks the deployment Deployed; returns older backups of the target that are no longer needed."""
        ...

    def forget_backups(self, deployment_id: int, removed: list[StaleBackup]) -> None: ...

    def restore_plan(self, deployment_id: int) -> RestorePlan: ...

    def close(self, deployment_id: int, status: DeploymentStatus, reason: str) -> list[StaleBackup]:
        """Ends a deployment that did not succeed (Rolled Back or Failed) with its reason.

        Returns the backups no rollback needs any more: a Rolled Back deployment's own (its files are back).
        A Failed one keeps them, so that its rollback can be tried again."""
        ...

    def pin_host_key(self, server_id: int, key_line: str) -> None: ...

    def server_access(self, server_id: int) -> ServerAccess:
        """How to reach a server (its credentials included), for the connectivity check."""
        ...

    def record_check(self, server_id: int, actor: str, outcome: CheckOutcome) -> ConnectivityResult: ...


class GroupStore(JobStore, Protocol):
    """The journal of a group of deployments on one server (certfleet.tasks.deploy_group): each step one call,
    and one transaction, for the whole group."""

    def single_targets(self, server_id: int, certificate_ids: list[int]) -> dict[int, TargetJob]:
        """The job of each certificate whose only target is on this server (the others are not grouped)."""
        ...

    def open_group(
        self, served: dict[int, tuple[TargetJob, str | None]], flow_run_id: str | None
    ) -> dict[int, Opened | str]:
        """Per certificate (its job, the serial its target serves now): a deployment opened, or why not."""
        ...

    def journal_steps(self, steps: list[JournalStep]) -> list[int]:
        """The steps recorded before they run; their ids, in order."""
        ...

    def update_steps(
        self,
        step_ids: list[int],
        *,
        state: StepState | None = None,
        existed_before: dict[int, bool] | None = None,
        detail: str | None = None,
    ) -> None: ...

    def finish_group(self, deployment_ids: list[int]) -> dict[int, list[StaleBackup]]:
        """The proven deployments Deployed; per deployment, its target's older backups."""
        ...

    def forget_group(self, removed: dict[int, list[StaleBackup]]) -> None: ...

    def deployment_servers(self, deployment_ids: list[int]) -> dict[int, int]:
        """The server of each deployment (to group a rollback per server)."""
        ...

    def restore_plans(self, deployment_ids: list[int]) -> dict[int, RestorePlan]: ...

    def close_group(self, closing: dict[int, tuple[DeploymentStatus, str]]) -> dict[int, list[StaleBackup]]:
        """Deployments ended (Rolled Back or Failed, with the reason): `close` of each."""
        ...


def current_store() -> JobStore:
    """The API store inside a bot's worker (it was given URL and token), else the database."""
    return current_group_store()


def current_group_store() -> GroupStore:
    """The same store, for a group's deployments (both stores are also group stores)."""
    url, token = os.environ.get(AGENT_URL_ENV), os.environ.get(AGENT_TOKEN_ENV)
    if url and token:
        from certfleet.jobs.api_store import ApiJobStore

        return ApiJobStore.shared(url, token)
    from certfleet.jobs.db_group import DbGroupStore

    return DbGroupStore()


def bundle_of(leaf_pem: str, chain_pem: str, key_pem: str) -> CertificateBundle:
    return CertificateBundle(leaf_pem=leaf_pem.encode(), chain_pem=chain_pem.encode(), key_pem=key_pem.encode())

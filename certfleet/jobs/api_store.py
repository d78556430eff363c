"""`JobStore` over certfleet's bot API: what a bot's flow runs use, holding only certfleet's URL and a token.

Every call carries the bot token; certfleet answers only for servers mapped to that bot. A refused token
(revoked, rotated) or a server that is not the bot's ends the job with a permanent error that says so; a
certfleet that does not answer is a transient error (the read-only calls are retried a few times first).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from certfleet.connectors.base import CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.jobs.discovery import FileScanJob, MissWire, OpenedRun, RunCounts, SightingWire
from certfleet.jobs.models import BundleOut, JournalStep, Opened, RestorePlan, ServerAccess, StaleBackup, TargetJob
from certfleet.jobs.store import AGENT_CA_BUNDLE_ENV, api_trust, bundle_of
from certfleet.models.orm import DeploymentStatus, StepState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from certfleet.discovery.scanner import ScanOptions
    from certfleet.inventory.record import Miss, RecordSummary, Sighting
    from certfleet.servers.service import CheckOutcome, ConnectivityResult

API_PREFIX = "/api/v1/agent"
READ_ATTEMPTS = 3
RECORD_PART = 50  # sightings per call: 50 chains of a few certificates stay far below CERTFLEET_MAX_BODY_BYTES


class ApiJobStore:
    _shared: ClassVar[dict[tuple[str, str], ApiJobStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, base_url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=10.0),
            verify=api_trust(os.environ.get(AGENT_CA_BUNDLE_ENV)),
            trust_env=False,  # the bot's proxy and CA settings are chosen explicitly, not inherited
        )

    @classmethod
    def shared(cls, base_url: str, token: str) -> ApiJobStore:
        """One client (one connection pool) per process."""
        with cls._shared_lock:
            store = cls._shared.get((base_url, token))
            if store is None:
                store = cls._shared[(base_url, token)] = cls(base_url, token)
            return store

    # -- HTTP ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        attempts = READ_ATTEMPTS if method == "GET" else 1  # a write might have landed: never repeat it blindly
        for attempt in range(1, attempts + 1):
            try:
                response = self.client.request(method, path, json=body)
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise TransientConnectorError(f"certfleet's API does not answer: {exc}") from exc
                time.sleep(0.5 * attempt)
                continue
            if response.status_code >= 500 and attempt < attempts:
                time.sleep(0.5 * attempt)
                continue
            return _answer(response)
        raise AssertionError("unreachable")

    # -- JobStore ----------------------------------------------------------------------------------------

    def certificate_targets(self, certificate_id: int) -> list[int]:
        return [int(t) for t in self._call("GET", f"/certificates/{certificate_id}/targets")]

    def target_job(self, certificate_id: int, target_id: int) -> TargetJob:
        return TargetJob.model_validate(self._call("GET", f"/certificates/{certificate_id}/targets/{target_id}/job"))

    def open_deployment(
        self, certificate_id: int, target_id: int, previous_serial: str | None, flow_run_id: str | None
    ) -> int:
        body = {
            "certificate_id": certificate_id,
            "target_id": target_id,
            "previous_serial": previous_serial,
            "flow_run_id": flow_run_id,
        }
        return int(self._call("POST", "/deployments", body)["id"])

    def deployment_job(self, deployment_id: int) -> TargetJob:
        return TargetJob.model_validate(self._call("GET", f"/deployments/{deployment_id}/job"))

    def bundle(self, deployment_id: int) -> CertificateBundle:
        out = BundleOut.model_validate(self._call("GET", f"/deployments/{deployment_id}/bundle"))
        return bundle_of(out.leaf_pem, out.chain_pem, out.key_pem)

    def journal(
        self,
        deployment_id: int,
        action: str,
        path: str | None = None,
        backup_path: str | None = None,
        undo: dict[str, Any] | None = None,
    ) -> int:
        body = {"action": action, "path": path, "backup_path": backup_path, "undo": undo}
        return int(self._call("POST", f"/deployments/{deployment_id}/steps", body)["id"])

    def update_step(
        self,
        step_id: int,
        *,
        state: StepState | None = None,
        existed_before: bool | None = None,
        detail: str | None = None,
    ) -> None:
        body = {"state": state.value if state else None, "existed_before": existed_before, "detail": detail}
        self._call("PATCH", f"/steps/{step_id}", body)

    def finish(self, deployment_id: int) -> list[StaleBackup]:
        return [StaleBackup.model_validate(x) for x in self._call("POST", f"/deployments/{deployment_id}/finish")]

    def forget_backups(self, deployment_id: int, removed: list[StaleBackup]) -> None:
        body = [x.model_dump() for x in removed]
        self._call("POST", f"/deployments/{deployment_id}/forget-backups", body)

    def restore_plan(self, deployment_id: int) -> RestorePlan:
        return RestorePlan.model_validate(self._call("GET", f"/deployments/{deployment_id}/restore-plan"))

    def close(self, deployment_id: int, status: DeploymentStatus, reason: str) -> list[StaleBackup]:
        body = {"status": status.value, "reason": reason}
        return [StaleBackup.model_validate(x) for x in self._call("POST", f"/deployments/{deployment_id}/close", body)]

    # -- GroupStore: a group of deployments on one server, each step one call ----------------------------

    def single_targets(self, server_id: int, certificate_ids: list[int]) -> dict[int, TargetJob]:
        body = {"server_id": server_id, "certificate_ids": certificate_ids}
        answer = self._call("POST", "/groups/targets", body)
        return {int(c): TargetJob.model_validate(job) for c, job in answer.items()}

    def open_group(
        self, served: dict[int, tuple[TargetJob, str | None]], flow_run_id: str | None
    ) -> dict[int, Opened | str]:
        body = {
            "served": [
                {"certificate_id": c, "target_id": job.target_id, "previous_serial": serial}
                for c, (job, serial) in served.items()
            ],
            "flow_run_id": flow_run_id,
        }
        out: dict[int, Opened | str] = {}
        for row in self._call("POST", "/groups/open", body):
            if row["refusal"] is not None:
                out[int(row["certificate_id"])] = str(row["refusal"])
            else:
                files = BundleOut.model_validate(row["bundle"])
                out[int(row["certificate_id"])] = Opened(
                    TargetJob.model_validate(row["job"]), bundle_of(files.leaf_pem, files.chain_pem, files.key_pem)
                )
        return out

    def journal_steps(self, steps: list[JournalStep]) -> list[int]:
        return [int(i) for i in self._call("POST", "/groups/steps", [st.model_dump() for st in steps])]

    def update_steps(
        self,
        step_ids: list[int],
        *,
        state: StepState | None = None,
        existed_before: dict[int, bool] | None = None,
        detail: str | None = None,
    ) -> None:
        if not step_ids:
            return
        body = {
            "step_ids": step_ids,
            "state": state.value if state else None,
            "existed_before": {str(k): v for k, v in existed_before.items()} if existed_before is not None else None,
            "detail": detail,
        }
        self._call("POST", "/groups/steps/update", body)

    def finish_group(self, deployment_ids: list[int]) -> dict[int, list[StaleBackup]]:
        answer = self._call("POST", "/groups/finish", {"deployment_ids": deployment_ids})
        return {int(d): [StaleBackup.model_validate(x) for x in items] for d, items in answer.items()}

    def forget_group(self, removed: dict[int, list[StaleBackup]]) -> None:
        body = {str(d): [x.model_dump() for x in items] for d, items in removed.items()}
        if body:
            self._call("POST", "/groups/forget-backups", body)

    def deployment_servers(self, deployment_ids: list[int]) -> dict[int, int]:
        answer = self._call("POST", "/groups/servers", {"deployment_ids": deployment_ids})
        return {int(d): int(server) for d, server in answer.items()}

    def restore_plans(self, deployment_ids: list[int]) -> dict[int, RestorePlan]:
        answer = self._call("POST", "/groups/restore-plans", {"deployment_ids": deployment_ids})
        return {int(d): RestorePlan.model_validate(plan) for d, plan in answer.items()}

    def close_group(self, closing: dict[int, tuple[DeploymentStatus, str]]) -> dict[int, list[StaleBackup]]:
        body = {str(d): {"status": status.value, "reason": reason} for d, (status, reason) in closing.items()}
        answer = self._call("POST", "/groups/close", body)
        return {int(d): [StaleBackup.model_validate(x) for x in items] for d, items in answer.items()}

    def pin_host_key(self, server_id: int, key_line: str) -> None:
        self._call("POST", f"/servers/{server_id}/host-key", {"key_line": key_line})

    def server_access(self, server_id: int) -> ServerAccess:
        return ServerAccess.model_validate(self._call("GET", f"/servers/{server_id}/access"))

    def record_check(self, server_id: int, actor: str, outcome: CheckOutcome) -> ConnectivityResult:
        from certfleet.servers.service import ConnectivityResult

        body = {"actor": actor, "outcome": outcome.model_dump()}
        return ConnectivityResult.model_validate(self._call("POST", f"/servers/{server_id}/check", body))


class ApiDiscoveryStore:
    """`DiscoveryStore` over the bot API, on the same client (token, connection pool) as the job store."""

    def __init__(self, api: ApiJobStore) -> None:
        self._call = api._call

    def open_endpoint_run(
        self, bot_id: int | None, targets: list[str] | None, ports: str | list[int], options: ScanOptions,
        flow_run_id: str | None,
    ) -> OpenedRun:  # fmt: skip
        body = {
            "bot_id": bot_id,
            "targets": targets,
            "ports": ports,
            "options": dataclasses.asdict(options),
            "flow_run_id": flow_run_id,
        }
        return OpenedRun.model_validate(self._call("POST", "/discovery/endpoint-runs", body))

    def set_plan(self, run_id: int, endpoints_total: int, notes: list[str]) -> None:
        self._call("POST", f"/discovery/runs/{run_id}/plan", {"endpoints_total": endpoints_total, "notes": notes})

    def open_files_run(
        self, bot_id: int | None, server_ids: list[int] | None, extra_paths: list[str], flow_run_id: str | None
    ) -> OpenedRun:
        body = {"bot_id": bot_id, "server_ids": server_ids, "extra_paths": extra_paths, "flow_run_id": flow_run_id}
        return OpenedRun.model_validate(self._call("POST", "/discovery/file-runs", body))

    def file_scan_job(self, run_id: int, server_id: int, extra_paths: list[str]) -> FileScanJob:
        body = {"server_id": server_id, "extra_paths": extra_paths}
        return FileScanJob.model_validate(self._call("POST", f"/discovery/runs/{run_id}/file-job", body))

    def record(self, run_id: int, sightings: Sequence[Sighting], misses: Sequence[Miss]) -> RecordSummary:
        from certfleet.inventory.record import RecordSummary

        total = RecordSummary()
        # In parts, so that a server with many files stays under certfleet's request size limit.
        for start in range(0, max(len(sightings), len(misses), 1), RECORD_PART):
            body = {
                "sightings": [
                    SightingWire.of(x).model_dump(mode="json") for x in sightings[start : start + RECORD_PART]
                ],
                "misses": [MissWire.of(x).model_dump(mode="json") for x in misses[start : start + RECORD_PART]],
            }
            total.add(RecordSummary.model_validate(self._call("POST", f"/discovery/runs/{run_id}/record", body)))
        return total

    def add_counts(self, run_id: int, counts: RunCounts) -> None:
        self._call("POST", f"/discovery/runs/{run_id}/counts", counts.model_dump())

    def finish(self, run_id: int, status: str, errors: Sequence[str] = ()) -> None:
        self._call("POST", f"/discovery/runs/{run_id}/finish", {"status": status, "errors": list(errors)})


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        detail = str(response.json().get("detail"))
    except (ValueError, AttributeError):
        detail = response.text[:200] or response.reason_phrase
    if response.status_code == 401:
        raise PermanentConnectorError(f"certfleet refused this bot's token: {detail}")
    if response.status_code == 403:
        raise PermanentConnectorError(f"certfleet refused the request of this bot: {detail}")
    if response.status_code >= 500:
        raise TransientConnectorError(f"certfleet's API failed ({response.status_code}): {detail}")
    raise PermanentConnectorError(detail)

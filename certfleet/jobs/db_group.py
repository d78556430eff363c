"""The deployment journal of a group of certificates on one server, a transaction per step of the group.

`deploy_group` (certfleet.tasks.deploy_group) deploys many certificates to one server with one config test and one
reload. Journalled one certificate at a time, that was about twenty transactions per certificate (each file's step
recorded, its backup noted, its install noted, ...): on SQLite each commit waits for the disk, and the journal, not
the certificates, was most of a batch's time. Here each step of the group is one transaction for all its
certificates, in the same order as one deployment's: every change is still committed before it is made (the whole
group's file steps before the first backup, the backups' outcome before the first install), so
`rollback-deployment` of any one deployment stays exact. The rollback of a group (a stopped rotate-batch) likewise:
plans read, steps marked restored, deployments closed, each in one transaction. A bot deploys its groups through
the bot API (certfleet.dashboard.api.agent), which calls the deploy steps here with the bot's id: each call then
first checks that every server, deployment and step it concerns is the bot's (`NotYourServer`, a 403).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session, load_only, selectinload

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.jobs.db_store import (
    ACTOR,
    DbJobStore,
    NotYourServer,
    add_deployments,
    certificate_bundle,
    close_deployment,
    deploy_refusal,
    proven,
    restore_plan,
    stale_backups,
    still_running,
    target_job,
)
from certfleet.jobs.models import JournalStep, Opened, RestorePlan, StaleBackup, TargetJob
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentStep,
    DeploymentTarget,
    Server,
    StepState,
)

# The certificate's columns a group step reads (the rest, the private key among them, is not loaded for it).
_JOB_COLUMNS = (Certificate.id, Certificate.common_name, Certificate.serial_number, Certificate.pem_chain)
_PROVEN_COLUMNS = (
    Certificate.id,
    Certificate.status,
    Certificate.status_reason,
    Certificate.last_provisioned_on,
    Certificate.serial_number,
    Certificate.sha256_thumbprint,
    Certificate.served_serial_number,
    Certificate.served_sha256_thumbprint,
)


class DbGroupStore(DbJobStore):
    """`DbJobStore` with each step of a group of deployments in one transaction (with `bot_id`: that bot's only)."""

    def _all_mine(self, s: Session, deployment_ids: Collection[int] = (), step_ids: Collection[int] = ()) -> None:
        """With `bot_id`: every deployment, and every step's deployment, is on a server mapped to this bot."""
        if self.bot_id is None:
            return
        servers = select(Server.id, Server.host, Server.bot_id).join(
            DeploymentTarget, DeploymentTarget.server_id == Server.id
        )
        through = servers.join(Deployment, Deployment.target_id == DeploymentTarget.id)
        rows: list[Row[int, str, int | None]] = []
        if deployment_ids:
            rows += s.execute(through.where(Deployment.id.in_(list(deployment_ids)))).all()
        if step_ids:
            by_step = through.join(DeploymentStep, DeploymentStep.deployment_id == Deployment.id)
            rows += s.execute(by_step.where(DeploymentStep.id.in_(list(step_ids)))).all()
        for server_id, host, bot_id in rows:
            if bot_id != self.bot_id:
                raise NotYourServer(f"server {server_id} ({host}) is not mapped to this bot")

    def single_targets(self, server_id: int, certificate_ids: list[int]) -> dict[int, TargetJob]:
        """The job of each certificate whose only target is on this server (the others are not grouped)."""
        with session_scope() as s:
            if self.bot_id is not None:
                self._mine(repo.get(s, Server, server_id))
            certs = s.scalars(
                select(Certificate)
                .where(Certificate.id.in_(certificate_ids))
                .options(
                    load_only(*_JOB_COLUMNS),  # a job carries no key (not decrypted) and none of the inventory's facts
                    selectinload(Certificate.targets).selectinload(DeploymentTarget.server),
                )
            )
            return {
                cert.id: target_job(cert.targets[0])
                for cert in certs
                if len(cert.targets) == 1 and cert.targets[0].server_id == server_id
            }

    def open_group(
        self, served: dict[int, tuple[TargetJob, str | None]], flow_run_id: str | None
    ) -> dict[int, Opened | str]:
        """Per certificate (its job and the serial its target serves now): a deployment opened, or why not.

        The refusals of `open_deployment`: one that concerns the certificate (not issued, no key, cannot be
        served) is said on it; a deployment still running on the target is not (it is that one's story)."""
        out: dict[int, Opened | str] = {}
        opening: dict[int, tuple[Certificate, DeploymentTarget, str | None]] = {}
        with session_scope() as s:
            certs = {
                c.id: c
                for c in s.scalars(
                    select(Certificate)
                    .where(Certificate.id.in_(list(served)))
                    .options(selectinload(Certificate.targets).selectinload(DeploymentTarget.server))
                )
            }
            busy = dict(
                s.execute(
                    select(Deployment.target_id, func.max(Deployment.id))
                    .where(
                        Deployment.target_id.in_([job.target_id for job, _ in served.values()]),
                        Deployment.status == DeploymentStatus.RUNNING,
                    )
                    .group_by(Deployment.target_id)
                ).all()
            )
            for certificate_id, (job, previous_serial) in served.items():
                cert = certs[certificate_id]
                target = next(t for t in cert.targets if t.id == job.target_id)
                self._mine(target.server)
                refusal = deploy_refusal(cert, target)
                if refusal is not None:
                    cert.status = CertificateStatus.DEPLOYMENT_FAILED
                    cert.status_reason = refusal
                    repo.audit(s, actor=ACTOR, action="deploy", obj=cert, outcome="refused", detail=refusal)
                    out[certificate_id] = refusal
                elif job.target_id in busy:
                    out[certificate_id] = still_running(busy[job.target_id])
                else:
                    opening[certificate_id] = (cert, target, previous_serial)
            ids = add_deployments(s, list(opening.values()), flow_run_id)
            for certificate_id, (cert, target, previous_serial) in opening.items():
                job = served[certificate_id][0]
                opened = job.model_copy(
                    update={
                        "deployment_id": ids[target.id],
                        "serial_number": cert.serial_number,
                        "previous_serial": previous_serial,
                    }
                )
                out[certificate_id] = Opened(opened, certificate_bundle(cert))
        return out

    def journal_steps(self, steps: list[JournalStep]) -> list[int]:
        """The steps recorded (Planned) before they run, in one transaction; their ids, in order."""
        ids = sorted({st.deployment_id for st in steps})
        with session_scope() as s:
            self._all_mine(s, deployment_ids=ids)
            status = dict(s.execute(select(Deployment.id, Deployment.status).where(Deployment.id.in_(ids))).all())
            for deployment_id in ids:
                if status.get(deployment_id) is not DeploymentStatus.RUNNING:
                    state = status[deployment_id].value if deployment_id in status else "gone"
                    raise PermanentConnectorError(
                        f"deployment {deployment_id} is {state}: no further change is journalled"
                    )
            last = dict(
                s.execute(
                    select(DeploymentStep.deployment_id, func.max(DeploymentStep.seq))
                    .where(DeploymentStep.deployment_id.in_(ids))
                    .group_by(DeploymentStep.deployment_id)
                ).all()
            )
            rows = []
            keys: list[tuple[int, int]] = []  # (deployment, seq) of each row: unique per step
            for st in steps:
                last[st.deployment_id] = seq = (last.get(st.deployment_id) or 0) + 1
                keys.append((st.deployment_id, seq))
                rows.append(
                    {
                        "deployment_id": st.deployment_id,
                        "seq": seq,
                        "action": st.action,
                        "path": st.path,
                        "backup_path": st.backup_path,
                        "state": StepState.PLANNED,
                    }
                )
            by_key = repo.insert_ids(s, DeploymentStep, rows, DeploymentStep.deployment_id, DeploymentStep.seq)
            return [by_key[key] for key in keys]

    def update_steps(
        self,
        step_ids: list[int],
        *,
        state: StepState | None = None,
        existed_before: dict[int, bool] | None = None,
        detail: str | None = None,
    ) -> None:
        """Steps marked in one transaction: a state and detail for all, `existed_before` per step."""
        if not step_ids:
            return
        rows = []
        for step_id in step_ids:
            row: dict[str, object] = {"id": step_id}
            if state is not None:
                row["state"] = state
            if detail is not None:
                row["detail"] = detail
            if existed_before is not None:
                row["existed_before"] = existed_before[step_id]
            rows.append(row)
        with session_scope() as s:
            self._all_mine(s, step_ids=step_ids)
            s.execute(update(DeploymentStep), rows)

    def finish_group(self, deployment_ids: list[int]) -> dict[int, list[StaleBackup]]:
        """The proven deployments Deployed in one transaction; per deployment, its target's older backups."""
        with session_scope() as s:
            deployments = s.scalars(
                select(Deployment)
                .where(Deployment.id.in_(deployment_ids))
                .options(
                    selectinload(Deployment.target)
                    .selectinload(DeploymentTarget.certificate)
                    .load_only(*_PROVEN_COLUMNS),  # what `proven` reads and writes, nothing decrypted or parsed
                    selectinload(Deployment.target).selectinload(DeploymentTarget.server),
                )
            ).all()
            for d in deployments:
                self._mine(d.target.server)
            with repo.audits_together(s):
                for d in deployments:
                    proven(s, d)
            return stale_backups(s, deployments)

    def forget_group(self, removed: dict[int, list[StaleBackup]]) -> None:
        """Backups removed from the server, per deployment whose finish removed them: forgotten at once."""
        rows = [
            {"id": item.step_id, "backup_path": None, "detail": f"backup {item.path} removed after deployment {d}"}
            for d, items in removed.items()
            for item in items
        ]
        if rows:
            with session_scope() as s:
                self._all_mine(
                    s, deployment_ids=list(removed), step_ids=[i.step_id for v in removed.values() for i in v]
                )
                s.execute(update(DeploymentStep), rows)

    def deployment_servers(self, deployment_ids: list[int]) -> dict[int, int]:
        """The server of each deployment (to group a rollback per server)."""
        with session_scope() as s:
            self._all_mine(s, deployment_ids=deployment_ids)
            return dict(
                s.execute(
                    select(Deployment.id, DeploymentTarget.server_id)
                    .join(DeploymentTarget, DeploymentTarget.id == Deployment.target_id)
                    .where(Deployment.id.in_(deployment_ids))
                ).all()
            )

    def restore_plans(self, deployment_ids: list[int]) -> dict[int, RestorePlan]:
        """`restore_plan` of each deployment, read in one transaction."""
        with session_scope() as s:
            deployments = s.scalars(
                select(Deployment)
                .where(Deployment.id.in_(deployment_ids))
                .options(
                    selectinload(Deployment.steps),
                    selectinload(Deployment.target).selectinload(DeploymentTarget.certificate),
                    selectinload(Deployment.target).selectinload(DeploymentTarget.server),
                )
            ).all()
            for d in deployments:
                self._mine(d.target.server)
            return {d.id: restore_plan(s, d) for d in deployments}

    def close_group(self, closing: dict[int, tuple[DeploymentStatus, str]]) -> dict[int, list[StaleBackup]]:
        """Deployments ended (Rolled Back or Failed, with the reason) in one transaction: `close` of each."""
        with session_scope() as s:
            deployments = s.scalars(
                select(Deployment)
                .where(Deployment.id.in_(list(closing)))
                .options(
                    selectinload(Deployment.steps),
                    selectinload(Deployment.target).selectinload(DeploymentTarget.certificate),
                    selectinload(Deployment.target).selectinload(DeploymentTarget.server),
                )
            ).all()
            for d in deployments:
                self._mine(d.target.server)
            return {d.id: close_deployment(s, d, *closing[d.id]) for d in deployments}

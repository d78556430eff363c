"""`certfleet demo`: a whole lifecycle on a throwaway fleet, ending with a deployment broken on purpose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from certfleet.connectors.servers.probe import ProbeError, fetch_served_chain
from certfleet.demo.fleet import DemoHost, plan_fleet, register_fleet
from certfleet.demo.listener import ListenerProcess
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, Deployment
from certfleet.models.repo import get
from certfleet.pki.parse import serial_hex


@dataclass(frozen=True)
class DemoRow:
    host: str
    endpoint: str
    step: str
    expected_serial: str
    served_serial: str
    status: str
    note: str


class DemoFailed(RuntimeError):
    """The demo did not end the way the lifecycle promises; the rows say where."""


def served_serial(host: DemoHost) -> str:
    try:
        return serial_hex(fetch_served_chain("127.0.0.1", host.port, server_name=host.fqdn)[0].serial_number)
    except ProbeError as exc:
        return f"({exc})"


def run_demo(root: Path, *, ca_connector_id: int, bot_id: int, say: Callable[[str], None]) -> list[DemoRow]:
    # Imported here: importing the flows imports Prefect, which must see the demo's settings first.
    from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
    from certfleet.flows.issuance import issue_certificate

    hosts = plan_fleet(root, 3)
    listeners: list[ListenerProcess] = []
    rows: list[DemoRow] = []
    try:
        for host in hosts:
            listeners.append(host.listener())
            listeners[-1].launch()
            say(
                f"started {host.fqdn} on 127.0.0.1:{host.port}, serving a self-signed certificate "
                f"(serial {served_serial(host)})"
            )
        cert_ids = register_fleet(hosts, ca_connector_id=ca_connector_id, bot_id=bot_id)

        for host, cert_id in zip(hosts, cert_ids, strict=True):
            serial = issue_certificate(cert_id)
            say(f"issued {host.fqdn} from the built-in CA: serial {serial}")
            deploy_certificate(cert_id)
            rows.append(_row(host, cert_id, "issue + deploy + verify"))
            say(f"deployed to {host.fqdn}; a TLS handshake shows serial {served_serial(host)}")

        broken, broken_id = hosts[-1], cert_ids[-1]
        say(f"breaking {broken.fqdn} on purpose: its reload command now reloads nothing")
        _set_reload_command(broken_id, "true")
        new_serial = issue_certificate(broken_id)
        say(f"issued a renewal for {broken.fqdn}: serial {new_serial}")
        try:
            deploy_certificate(broken_id)
        except DeploymentFailed:
            pass
        else:
            raise DemoFailed(f"the broken deployment to {broken.fqdn} was not caught")
        rows.append(_row(broken, broken_id, "renew + deploy (broken)"))
        say(f"caught and rolled back: {broken.fqdn} serves serial {served_serial(broken)} again")
    finally:
        for listener in listeners:
            listener.stop()
    return rows


def _set_reload_command(certificate_id: int, command: str) -> None:
    with session_scope() as s:
        for target in get(s, Certificate, certificate_id).targets:
            target.server.reload_command = command


def _row(host: DemoHost, certificate_id: int, step: str) -> DemoRow:
    with session_scope() as s:
        cert = get(s, Certificate, certificate_id)
        deployment = s.scalars(
            select(Deployment).where(Deployment.certificate_id == certificate_id).order_by(Deployment.id.desc())
        ).first()
        return DemoRow(
            host=host.fqdn,
            endpoint=f"127.0.0.1:{host.port}",
            step=step,
            expected_serial=deployment.serial_number if deployment else "-",
            served_serial=served_serial(host),
            status=cert.status.value,
            note=(deployment.reason if deployment and deployment.reason else ""),
        )

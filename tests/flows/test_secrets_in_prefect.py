"""Secrets sweep, the flows' half (issue 12): issue, deploy, a failed deploy rolled back and a rollback on request,
with the built-in CA and a real TLS listener; then Prefect's own database (flow run parameters, task states and
results, logs, artifacts) read raw, and everything logged, must hold none of the private keys involved (each
certificate's, the built-in CA's two) nor certfleet's master key. Tasks pass ids only; this proves it."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pytest
from prefect.logging.handlers import APILogHandler
from prefect.settings import get_current_settings
from sqlalchemy import select

from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
from certfleet.flows.issuance import issue_certificate
from certfleet.flows.rollback import rollback_deployment
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate, Deployment
from certfleet.settings import get_settings
from tests.flows.conftest import Site


def _pem_lines(pem: str | bytes) -> list[str]:
    text = pem.decode() if isinstance(pem, bytes) else pem
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def _certificate_key(certificate_id: int) -> list[str]:
    with session_scope() as s:
        key = repo.get(s, Certificate, certificate_id).private_key
        assert key is not None
        return _pem_lines(key)


def _ca_keys() -> list[str]:
    with session_scope() as s:
        connector = s.scalars(select(CAConnector).where(CAConnector.kind == "local")).one()
        secret = repo.connector_credentials(connector)  # created on the first issue
    return _pem_lines(secret["root_key_pem"]) + _pem_lines(secret["issuing_key_pem"])


def _prefect_database() -> bytes:
    url = str(get_current_settings().server.database.connection_url.get_secret_value())  # type: ignore[union-attr]
    path = Path(url.split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_no_key_reaches_prefect_or_the_logs(
    site: Site, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    issue_certificate(site.certificate_id)
    secrets = _ca_keys() + _certificate_key(site.certificate_id)
    deploy_certificate(site.certificate_id)
    issue_certificate(site.certificate_id)
    secrets += _certificate_key(site.certificate_id)
    with session_scope() as s:
        server = repo.get(s, Certificate, site.certificate_id).targets[0].server
        reload, server.reload_command = server.reload_command, shlex.join(["true"])
    with pytest.raises(DeploymentFailed):
        deploy_certificate(site.certificate_id)  # rolled back: the listener never reloads
    with session_scope() as s:
        repo.get(s, Certificate, site.certificate_id).targets[0].server.reload_command = reload
    deploy_certificate(site.certificate_id)
    with session_scope() as s:
        newest = s.scalars(select(Deployment.id).order_by(Deployment.id.desc())).first()
    assert rollback_deployment(newest) == "Rolled Back"
    APILogHandler().flush()  # (at most 5 s) the runs' logs reach Prefect's database before it is read

    settings = get_settings()
    sealed_with = settings.secret_key.get_secret_value() if settings.secret_key else settings.key_file.read_text()
    master_keys = [line.strip() for line in sealed_with.splitlines() if line.strip()]
    assert len(secrets) > 10
    everything = {
        "Prefect's database": _prefect_database().decode("latin-1"),
        "log records": caplog.text,
        "stdout/stderr": "".join(capfd.readouterr()),
    }
    stored = _prefect_database()
    assert f"deploy-certificate-{site.certificate_id}".encode() in stored  # the right database, runs recorded
    assert b"failed, rolling back" in stored  # and the runs' logs in it
    for where, text in everything.items():
        leaked = [s for s in [*secrets, *master_keys] if s in text]
        assert not leaked, f"{where} holds {len(leaked)} secret line(s)"

"""IIS on Windows: the PKCS#12 written over real SMB, the store import and rebinding journalled with its own undo.

The file part is real: a Samba smbd (NTLM, the share, the atomic write, the backup) holds the Key Store Folder
Path, and the PKCS#12 the handler wrote there is what gets imported. The PowerShell run on the host is not:
no Windows host runs here, so `iis.remote_exec` is the emulator of its remote-exec result
(tests/emulators/iis_host.py) that reads that PKCS#12 with the password sent on standard input, keeps an
emulated certificate store and IIS bindings, and serves them over TLS for the handshake proofs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from certfleet.connectors.servers import iis
from certfleet.connectors.servers.smb import close_cached_transports
from certfleet.demo.listener import free_port
from tests.emulators.iis_host import Binding, IisHostEmulator
from tests.integration.pki_kit import issued_bundle
from tests.integration.smbd import OTHER_USER, SMB_PASSWORD, SMB_USER, Smbd, make_folder, running_smbd

SITE = 'Shop\'s "$site"; `x`'  # a site name that would break out of naive quoting
SNI = "shop.example.test"


@pytest.fixture(scope="module")
def smbd() -> Iterator[Smbd]:
    with running_smbd(services={}) as server:
        make_folder(server.share / "certs")
        yield server


@pytest.fixture
def host(smbd: Smbd, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[IisHostEmulator, int]]:
    """The emulated Windows host behind the real share: one site with an SNI binding and a plain binding on
    one port, both on an old certificate already in the store."""
    port = free_port()
    old = issued_bundle("old.example.test")
    old_thumb = iis.thumbprint(old.leaf_pem)
    emulator = IisHostEmulator(
        smbd.share,
        sites={
            SITE: [
                Binding(f"*:{port}:{SNI}", old_thumb, sni=True),
                Binding(f"*:{port}:", old_thumb),
                Binding("*:8443:", old_thumb),  # another port: never touched
            ],
            "Other": [Binding(f"*:{port}:other.example.test", old_thumb, sni=True)],
        },
        store={old_thumb: (old.leaf_pem, old.key_pem)},
    )
    monkeypatch.setattr(iis, "remote_exec", lambda transport: emulator)
    with emulator.serve(port):
        yield emulator, port
    close_cached_transports()


def _server(boot: Any, smbd: Smbd, port: int, **overrides: Any) -> int:
    from certfleet.servers.service import ServerInput, create_server

    values: dict[str, Any] = {
        "connection": "smb", "description": "IIS", "ip_address": "127.0.0.1", "username": SMB_USER,
        "password": SMB_PASSWORD, "server_type": "iis", "iis_site": SITE, "keystore_folder": "C:\\certs",
        "ports": [port], "smb_port": smbd.port, "smb_share": "C$", "bot_id": boot.local_bot_id,
    }  # fmt: skip
    values.update(overrides)
    return create_server(ServerInput(**values), actor="test").id


def _certificate(boot: Any, server_id: int, port: int) -> int:
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Certificate, DeploymentTarget

    with session_scope() as s:
        cert = Certificate(
            common_name=SNI, sans=[SNI], ca_connector_id=boot.ca_connector_id,
            provisioning_bot_id=boot.local_bot_id, key_spec="ec-p256", validity_days=30,
        )  # fmt: skip
        cert.targets.append(DeploymentTarget(server_id=server_id, port=port, server_name=SNI))
        s.add(cert)
        s.flush()
        return cert.id


def _thumbs(emulator: IisHostEmulator) -> dict[str, str]:
    return {f"{site}|{b.info}": b.thumbprint for site, bindings in emulator.sites.items() for b in bindings}


def test_iis_deploys_a_pkcs12_over_smb_rebinds_sni_and_plain_bindings_and_rolls_back(
    boot: Any, smbd: Smbd, host: tuple[IisHostEmulator, int]
) -> None:
    """deploy-certificate end to end: the PKCS#12 in the Key Store Folder Path over SMB, the binding step journalled
    with the previous thumbprints before it ran, the handshake proof on the SNI and the plain binding; then an
    apply whose process dies after rebinding: the rollback replays the journalled undo, removes the certificate
    it imported, restores the file, and the old serial is proven again."""
    from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
    from certfleet.flows.issuance import issue_certificate
    from certfleet.models.orm import DeploymentStatus, StepState
    from tests.integration.conftest import deployments, served_serial

    emulator, port = host
    before = _thumbs(emulator)
    old_serial = served_serial(port, SNI)
    certificate_id = _certificate(boot, _server(boot, smbd, port), port)
    first = issue_certificate(certificate_id)
    deploy_certificate(certificate_id)
    assert served_serial(port, SNI) == first
    pfx = smbd.share / "certs" / f"certfleet-{port}-{SNI}.pfx"
    assert pfx.exists()
    deployed = deployments(certificate_id)[-1]
    step = next(st for st in deployed.steps if st.action == "iis-binding")
    assert step.state is StepState.DONE
    assert step.undo is not None
    assert {b["info"]: b["thumbprint"] for b in step.undo["bindings"]} == {
        f"*:{port}:{SNI}": before[f"{SITE}|*:{port}:{SNI}"],
        f"*:{port}:": before[f"{SITE}|*:{port}:"],
    }
    assert step.undo["imported"] is True
    assert [st.action for st in deployed.steps] == ["replace-file", "iis-binding", "config-test", "reload"]
    first_thumb = step.undo["thumbprint"]
    after_first = _thumbs(emulator)
    assert after_first[f"{SITE}|*:8443:"] == before[f"{SITE}|*:8443:"]  # other port untouched
    assert (
        after_first["Other|*:" + str(port) + ":other.example.test"]
        == before["Other|*:" + str(port) + ":other.example.test"]
    )
    # the secret went on standard input, never on the command line
    applied = next(c for c in emulator.calls if c.op == "apply")
    assert applied.stdin
    assert applied.stdin.strip().decode() not in applied.arguments

    second = issue_certificate(certificate_id)
    pfx_before = pfx.read_bytes()
    emulator.die_after.add("apply")  # rebinds, then the process dies without a result
    with pytest.raises(DeploymentFailed, match="Rolled Back"):
        deploy_certificate(certificate_id)
    assert served_serial(port, SNI) == first != second
    assert _thumbs(emulator) == after_first
    assert pfx.read_bytes() == pfx_before  # the file restored byte for byte
    last = deployments(certificate_id)[-1]
    assert last.status is DeploymentStatus.ROLLED_BACK
    assert [st.state for st in last.steps if st.action in ("replace-file", "iis-binding")] == [StepState.RESTORED] * 2
    assert first_thumb in emulator.store
    assert sum(1 for t in emulator.store if t != first_thumb) == 1  # the second certificate was removed again
    assert old_serial != first


def test_a_binding_journalled_before_a_worker_died_is_undone_by_a_later_rollback(
    boot: Any, smbd: Smbd, host: tuple[IisHostEmulator, int]
) -> None:
    """The worker dies inside the apply (after the import and rebinding, before it could mark the step done):
    the step stays Planned with its undo data; rollback-deployment, from a process that has nothing in memory,
    rebinds the previous thumbprint, removes the imported certificate and restores the PKCS#12 file."""
    from certfleet.flows.issuance import issue_certificate
    from certfleet.models.orm import DeploymentStatus, StepState
    from certfleet.tasks import deployment
    from tests.integration.conftest import deployments, served_serial

    emulator, port = host
    before, store_before = _thumbs(emulator), set(emulator.store)
    old_serial = served_serial(port, SNI)
    certificate_id = _certificate(boot, _server(boot, smbd, port), port)
    issue_certificate(certificate_id)
    from certfleet.jobs.db_store import DbJobStore

    target = DbJobStore().certificate_targets(certificate_id)[0]
    deployment_id = deployment.start_deployment.fn(certificate_id, target)

    class WorkerDied(BaseException):
        pass

    real_apply = iis.IisHandler.apply

    def apply_then_die(self: iis.IisHandler, undo: dict[str, Any]) -> None:
        real_apply(self, undo)
        raise WorkerDied

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(iis.IisHandler, "apply", apply_then_die)
        with pytest.raises(WorkerDied):
            deployment.install_on_target.fn(deployment_id)
    assert _thumbs(emulator) != before  # the bindings were changed
    deployment._in_flight.clear()  # a new process: only the journal knows
    close_cached_transports()
    step = next(st for st in deployments(certificate_id)[-1].steps if st.action == "iis-binding")
    assert step.state is StepState.PLANNED
    assert deployment.restore_target.fn(deployment_id, "the worker died") == DeploymentStatus.ROLLED_BACK.value
    assert _thumbs(emulator) == before
    assert set(emulator.store) == store_before
    assert served_serial(port, SNI) == old_serial
    assert not (smbd.share / "certs" / f"certfleet-{port}-{SNI}.pfx").exists()  # there was none before
    # a second rollback finds nothing left to undo and changes nothing
    calls = len(emulator.calls)
    deployment.restore_target.fn(deployment_id, "again")
    assert _thumbs(emulator) == before
    assert len(emulator.calls) == calls


def test_a_site_without_an_https_binding_on_the_port_or_an_unknown_site_changes_nothing(
    boot: Any, smbd: Smbd, host: tuple[IisHostEmulator, int]
) -> None:
    from certfleet.flows.deployment import DeploymentFailed, deploy_certificate
    from certfleet.flows.issuance import issue_certificate
    from tests.integration.conftest import deployments

    emulator, port = host
    before, store_before = _thumbs(emulator), set(emulator.store)
    for site, reason in (("No such site", "IIS has no site named 'No such site'"),):
        certificate_id = _certificate(boot, _server(boot, smbd, port, iis_site=site, description=site), port)
        issue_certificate(certificate_id)
        with pytest.raises(DeploymentFailed):
            deploy_certificate(certificate_id)
        last = deployments(certificate_id)[-1]
        assert reason in (last.reason or "")
        assert last.steps == []  # refused while reading the bindings: nothing was written or journalled
    other_port = free_port()
    certificate_id = _certificate(boot, _server(boot, smbd, other_port, description="no binding"), other_port)
    issue_certificate(certificate_id)
    with pytest.raises(DeploymentFailed):
        deploy_certificate(certificate_id)
    assert f"no https binding on port {other_port}" in (deployments(certificate_id)[-1].reason or "")
    assert deployments(certificate_id)[-1].steps == []
    assert _thumbs(emulator) == before
    assert set(emulator.store) == store_before
    assert not list((smbd.share / "certs").glob(f"certfleet-{other_port}-*.pfx"))


def test_the_connectivity_check_of_an_iis_server_names_the_step_that_failed(
    boot: Any, smbd: Smbd, host: tuple[IisHostEmulator, int]
) -> None:
    """Login, the share, the Key Store Folder Path (written), the service manager, ADMIN$ and the right to create
    a service (a PsExec-style run): an administrator passes; a user who is none is stopped at ADMIN$, and the
    service manager refuses it the right to create services."""
    from certfleet.connectors.errors import PermanentConnectorError
    from certfleet.connectors.servers.scmr import ServiceControl
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
    from certfleet.servers.service import check_connectivity

    _emulator, port = host
    ok = check_connectivity(_server(boot, smbd, port))
    assert ok.status == "Active", ok.reason
    assert "share ADMIN$" in ok.checked
    assert "may create services (PsExec-style PowerShell run)" in ok.checked
    assert "C:\\certs is writable (a test file was written and removed)" in ok.checked

    viewer = check_connectivity(_server(boot, smbd, port, username=OTHER_USER, iis_site="Viewer"))
    assert viewer.status == "Unreachable"
    assert (viewer.reason or "").startswith("opening the share ADMIN$")
    missing = check_connectivity(_server(boot, smbd, port, keystore_folder="C:\\nowhere", iis_site="Missing"))
    assert (missing.reason or "").startswith(
        "looking at the Key Store Folder Path: the Key Store Folder Path C:\\nowhere"
    )

    settings = SmbSettings(host="127.0.0.1", username=OTHER_USER, password=SMB_PASSWORD, port=smbd.port)
    with SmbTransport(settings) as transport:
        ServiceControl(transport).check()  # may connect
        with pytest.raises(PermanentConnectorError, match="right to create services refused: access denied"):
            ServiceControl(transport).check(create_services=True)


def test_iis_is_registered_over_smb_only_with_its_key_store_folder(boot: Any, smbd: Smbd) -> None:
    from pydantic import ValidationError

    from certfleet.servers.service import ServerInput

    base: dict[str, Any] = {
        "connection": "smb", "description": "IIS", "ip_address": "10.0.0.5", "username": "CORP\\deployer",
        "password": "x", "server_type": "iis", "iis_site": SITE, "keystore_folder": "C:\\certs", "ports": [443],
        "smb_share": "C$",
    }  # fmt: skip
    assert ServerInput(**base).app_path == SITE  # stored exactly as given
    for change, message in (
        ({"keystore_folder": None}, "give the Key Store Folder Path"),
        ({"connection": "ssh", "smb_share": None}, "IIS is reached over SMB"),
        ({"iis_site": "two\nlines"}, "control character"),
        ({"keystore_folder": "C:\\certs\\..\\Windows"}, "`.` or `..`"),
    ):
        with pytest.raises(ValidationError, match=message):
            ServerInput(**{**base, **change})


def test_a_server_that_stops_answering_times_out_per_operation_and_nothing_half_written_stays(smbd: Smbd) -> None:
    """The smbd process serving the session is frozen (SIGSTOP): a write, and a service-manager call, wait no
    longer than the server's I/O and RPC timeouts; the real path keeps its old bytes; a new session works."""
    import os
    import signal
    import time

    from certfleet.connectors.errors import TransientConnectorError
    from certfleet.connectors.servers.scmr import ServiceControl
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
    from tests.integration.smbd import put_file

    folder = make_folder(smbd.share / "frozen")
    put_file(folder / "site.pfx", b"old")
    settings = SmbSettings(
        host="127.0.0.1", username=SMB_USER, password=SMB_PASSWORD, port=smbd.port, io_timeout=2, rpc_timeout=2
    )
    for what, operation in (
        (
            "write C:\\frozen\\site.pfx: no answer within 2 s",
            lambda t: t.write_atomic("C:\\frozen\\site.pfx", b"new", 0o600),
        ),
        ("the service manager call open: no answer within 2 s", lambda t: ServiceControl(t).check()),
    ):
        transport = SmbTransport(settings)
        session = transport.connect()
        serving = smbd.serving(session.connection.transport._sock.getsockname()[1])
        os.kill(serving, signal.SIGSTOP)
        began = time.monotonic()
        try:
            with pytest.raises(TransientConnectorError, match=re.escape(what)):
                operation(transport)
        finally:
            os.kill(serving, signal.SIGCONT)
        assert time.monotonic() - began < 10
        assert (folder / "site.pfx").read_bytes() == b"old"
        transport.close()
    with SmbTransport(settings) as again:  # the server answers again: a new session works
        assert again.read("C:\\frozen\\site.pfx") == b"old"


def test_smb_timeouts_are_server_settings_with_defaults_and_bounds(boot: Any) -> None:
    from pydantic import ValidationError

    from certfleet.servers.access import smb_settings
    from certfleet.servers.service import ServerInput, create_server, get_server

    base: dict[str, Any] = {
        "connection": "smb", "description": "IIS", "ip_address": "10.0.0.5", "username": "CORP\\deployer",
        "password": "x", "server_type": "iis", "iis_site": "Default Web Site", "keystore_folder": "C:\\certs",
        "ports": [443], "smb_share": "C$",
    }  # fmt: skip
    view = create_server(ServerInput(**base), actor="test")
    assert (view.smb_connect_timeout, view.smb_io_timeout, view.smb_rpc_timeout) == (15, 60, 60)
    tuned = create_server(
        ServerInput(**{**base, "iis_site": "B", "smb_connect_timeout": 5, "smb_io_timeout": 30, "smb_rpc_timeout": 90}),
        actor="test",
    )
    from certfleet.jobs.db_store import DbJobStore

    settings = smb_settings(DbJobStore().server_access(tuned.id))
    assert (settings.connect_timeout, settings.io_timeout, settings.rpc_timeout) == (5, 30, 90)
    assert get_server(tuned.id).smb_io_timeout == 30
    for change, message in (
        ({"smb_io_timeout": 0}, "greater than or equal to 1"),
        ({"smb_rpc_timeout": 3601}, "less than or equal to 3600"),
    ):
        with pytest.raises(ValidationError, match=message):
            ServerInput(**{**base, **change})
    linux = {"description": "web", "ip_address": "10.0.0.6", "username": "u", "password": "p", "server_type": "nginx",
             "nginx_path": "/etc/nginx", "ports": [443]}  # fmt: skip
    with pytest.raises(ValidationError, match="smb_io_timeout apply to Windows"):
        ServerInput(**{**linux, "smb_io_timeout": 5})


def test_a_key_that_is_not_the_certificates_or_a_pkcs12_password_that_does_not_open_it_changes_no_binding(
    smbd: Smbd, host: tuple[IisHostEmulator, int]
) -> None:
    """A key that does not match is refused before anything is written; a PKCS#12 the host cannot open with the
    password it was sent fails the import with the host's words, naming the site and step, bindings unchanged."""
    from dataclasses import replace

    from certfleet.connectors.base import FileWrite
    from certfleet.connectors.errors import PermanentConnectorError
    from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport

    emulator, port = host
    before, store_before = _thumbs(emulator), set(emulator.store)
    settings = SmbSettings(host="127.0.0.1", username=SMB_USER, password=SMB_PASSWORD, port=smbd.port)
    spec = ServerSpec(server_type="iis", app_path=SITE, keystore_folder="C:\\certs")
    bundle = issued_bundle(SNI)
    with SmbTransport(settings) as transport:
        handler = iis.IisHandler(transport, spec, TargetSpec(port=port, server_name=SNI))
        other = issued_bundle("other.example.test")
        with pytest.raises(PermanentConnectorError, match="the private key to install does not match the certificate"):
            handler.plan(replace(bundle, key_pem=other.key_pem))
        assert not (smbd.share / "certs" / f"certfleet-{port}-{SNI}.pfx").exists()

        (write,) = handler.plan(bundle)
        [change] = handler.changes(bundle)
        undo = change.measure()
        handler.install(FileWrite(write.path, write.data, write.mode))
        handler._password = "not-the-password"  # what a PKCS#12 whose password does not match meets on the host
        with pytest.raises(
            PermanentConnectorError,
            match=re.escape(f"IIS site {SITE!r} on Windows 127.0.0.1:{smbd.port}, port {port}: importing the "
                            "certificate and rebinding failed: The specified network password is not correct."),
        ):  # fmt: skip
            change.apply(undo)
        transport.remove(write.path)
    assert _thumbs(emulator) == before
    assert set(emulator.store) == store_before


def test_the_psexec_runner_works_on_the_servers_session_and_leaves_nothing_in_admin_share(smbd: Smbd) -> None:
    """The real pypsexec glue against the real Samba: on certfleet's own session it copies PAExec to ADMIN$ and
    asks the service manager to create its service. The emulated service manager does not create services (no
    Windows program could run here), so the run fails naming that step, and the PAExec copy is removed again; a
    user who is no administrator is refused when the service manager is opened with the right to create one."""
    from certfleet.connectors.errors import ConnectorError
    from certfleet.connectors.servers.powershell import PsExecRunner
    from certfleet.connectors.servers.smb import SmbSettings, SmbTransport

    admin_share = smbd.directory / "admin"
    for user, step in ((SMB_USER, "creating the PsExec service"), (OTHER_USER, "opening the service manager")):
        settings = SmbSettings(host="127.0.0.1", username=user, password=SMB_PASSWORD, port=smbd.port, rpc_timeout=10)
        with SmbTransport(settings) as transport:
            with pytest.raises(ConnectorError, match=re.escape(f"127.0.0.1:{smbd.port}: {step}")):
                PsExecRunner(transport).run_executable("powershell.exe", "-NoProfile", None, 10)
            found = transport.stat("C:\\certs")  # the session still serves files
            assert found is not None
            assert found.is_dir
        assert list(admin_share.iterdir()) == []


def test_when_the_journal_cannot_be_read_the_run_undoes_its_binding_from_memory(
    boot: Any, smbd: Smbd, host: tuple[IisHostEmulator, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store stops answering (a revoked bot token) after the rebinding failed: the run still puts the
    bindings and the file back from what it holds in memory, then fails naming the journal's refusal."""
    from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
    from certfleet.flows.issuance import issue_certificate
    from certfleet.jobs.db_store import DbJobStore
    from certfleet.tasks import deployment

    emulator, port = host
    before, store_before = _thumbs(emulator), set(emulator.store)
    certificate_id = _certificate(boot, _server(boot, smbd, port), port)
    issue_certificate(certificate_id)
    deployment_id = deployment.start_deployment.fn(certificate_id, DbJobStore().certificate_targets(certificate_id)[0])
    emulator.die_after.add("apply")
    with pytest.raises(ConnectorError, match="without a result"):
        deployment.install_on_target.fn(deployment_id)
    assert _thumbs(emulator) != before

    def refused(self: DbJobStore, deployment_id: int) -> None:
        raise PermissionError("the bot token was revoked")

    monkeypatch.setattr(DbJobStore, "restore_plan", refused)
    with pytest.raises(
        PermanentConnectorError,
        match=r"the 1 file\(s\) this run replaced were put back and its 1 other change\(s\) undone",
    ):
        deployment.restore_target.fn(deployment_id, "the new certificate is not served")
    assert _thumbs(emulator) == before
    assert set(emulator.store) == store_before
    assert not (smbd.share / "certs" / f"certfleet-{port}-{SNI}.pfx").exists()

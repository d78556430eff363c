"""The SMB transport and the Windows connectivity check against a real Samba smbd on 127.0.0.1.

Samba stands for the Windows server: NTLM, the share `C$` (a scratch folder standing for drive C:),
SMB 3 encryption (`enc$`, `smb encrypt = required`) and Samba's own service manager on the svcctl pipe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption

from certfleet.connectors.errors import ConnectorError, PermanentConnectorError
from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
from certfleet.connectors.servers.transport import restore_file, snapshot_file
from certfleet.servers.service import ServerInput, check_connectivity, create_server
from tests.integration.smbd import SMB_PASSWORD, SMB_USER, Smbd, make_folder, put_file, running_smbd


@pytest.fixture(scope="module")
def smbd() -> Iterator[Smbd]:
    with running_smbd() as server:
        yield server


def _transport(smbd: Smbd, **overrides: Any) -> SmbTransport:
    values: dict[str, Any] = {"host": "127.0.0.1", "username": SMB_USER, "password": SMB_PASSWORD, "port": smbd.port}
    values.update(overrides)
    return SmbTransport(SmbSettings(**values))


def _folder(smbd: Smbd, name: str) -> Path:
    return make_folder(smbd.share / name)


def test_atomic_write_replaces_the_file_and_keeps_crlf(smbd: Smbd) -> None:
    folder = _folder(smbd, "Apache24")
    put_file(folder / "site.pem", b"old\r\ncontent\r\n")
    new = b"-----BEGIN CERTIFICATE-----\r\n" + b"A" * 2048 + b"\r\n"
    with _transport(smbd) as transport:
        backup = snapshot_file(transport, "C:\\Apache24\\site.pem", "C:\\Apache24\\site.pem.certfleet-bak")
        transport.write_atomic("C:\\Apache24\\site.pem", new, 0o600)
        assert (folder / "site.pem").read_bytes() == new
        assert (folder / "site.pem.certfleet-bak").read_bytes() == b"old\r\ncontent\r\n"
        assert sorted(p.name for p in folder.iterdir()) == ["site.pem", "site.pem.certfleet-bak"]  # no temp left
        restore_file(transport, backup)
        assert (folder / "site.pem").read_bytes() == b"old\r\ncontent\r\n"
        fresh = snapshot_file(transport, "C:\\Apache24\\new.pem", "C:\\Apache24\\new.pem.certfleet-bak")
        transport.write_atomic("C:\\Apache24\\new.pem", b"x", 0o600)
        restore_file(transport, fresh)  # there was no file: it is removed again
        assert not (folder / "new.pem").exists()
        assert transport.read("C:\\Apache24\\missing.pem") is None
        assert transport.list_dir("C:\\Apache24") == ["site.pem", "site.pem.certfleet-bak"]
        stat = transport.stat("C:\\Apache24")
        assert stat is not None
        assert stat.is_dir
        with pytest.raises(PermanentConnectorError, match="folder C:\\\\Nope does not exist"):
            transport.write_atomic("C:\\Nope\\x.pem", b"x", 0o600)
        with pytest.raises(PermanentConnectorError, match="runs no commands"):
            transport.run("apachectl -t", 5)


def test_paths_outside_the_share_or_host_are_refused(smbd: Smbd) -> None:
    transport = _transport(smbd)
    with pytest.raises(PermanentConnectorError, match="outside the share C\\$"):
        transport.unc("D:\\certs\\site.pem")
    with pytest.raises(PermanentConnectorError, match="on another host"):
        transport.unc("\\\\fileserver\\C$\\site.pem")
    assert transport.unc("c:\\Apache24\\a.pem") == "\\\\127.0.0.1\\C$\\Apache24\\a.pem"
    named = _transport(smbd, share="web", share_folder="D:\\web")
    assert named.unc("D:\\web\\conf\\a.pem") == "\\\\127.0.0.1\\web\\conf\\a.pem"


def test_encryption_is_used_when_the_share_requires_it_or_the_setting_asks(smbd: Smbd) -> None:
    folder = _folder(smbd, "enc")
    put_file(folder / "a.pem", b"secret\r\n")
    # `enc$` requires encryption: smbprotocol encrypts by itself (the share is named: its folder is given)
    required = _transport(smbd, share="enc$", share_folder="C:\\")
    with required:
        assert required.read("C:\\enc\\a.pem") == b"secret\r\n"
    asked = _transport(smbd, encrypt=True)
    with asked:
        assert asked.session().encrypt_data
        assert asked.read("C:\\enc\\a.pem") == b"secret\r\n"


def test_wrong_password_unknown_share_and_closed_port_say_which_step(smbd: Smbd) -> None:
    with pytest.raises(
        PermanentConnectorError, match=re.escape(f"login as {SMB_USER} refused: wrong user name or password")
    ):
        _transport(smbd, password="wrong").connect()
    with pytest.raises(PermanentConnectorError, match=re.escape("cannot read N:\\a.pem: no such share")):
        _transport(smbd, share="N$").read("N:\\a.pem")
    from certfleet.demo.listener import free_port

    with pytest.raises(ConnectorError, match="cannot reach the SMB port"):
        _transport(smbd, port=free_port(), connect_timeout=2).connect()


def _windows_server(smbd: Smbd, **overrides: Any) -> int:
    form: dict[str, Any] = {
        "connection": "smb", "description": "win", "ip_address": "127.0.0.1", "username": SMB_USER,
        "password": SMB_PASSWORD, "server_type": "apache", "apache_path": "C:\\Apache24", "ports": [443],
        "smb_port": smbd.port, "smb_share": "C$", "service_name": "Spooler",
    }  # fmt: skip
    form.update(overrides)
    return create_server(ServerInput(**form), actor="ops").id


def test_connectivity_check_logs_in_opens_share_and_service_manager(database: str, smbd: Smbd) -> None:
    if not (smbd.share / "Apache24").exists():
        _folder(smbd, "Apache24")
    result = check_connectivity(_windows_server(smbd, service_name="Spooler"), actor="ops")
    assert (result.status, result.reason) == ("Active", None), result
    assert result.checked == [
        f"login as {SMB_USER}", "share C$", "C:\\Apache24 exists", "service manager (svcctl)", "service Spooler",
    ]  # fmt: skip
    bad = check_connectivity(_windows_server(smbd, password="wrong", apache_path="C:\\A2"), actor="ops")
    assert bad.status == "Unreachable"
    assert bad.reason is not None
    assert bad.reason.startswith("login: ")
    assert "wrong user name or password" in bad.reason
    missing = check_connectivity(_windows_server(smbd, apache_path="C:\\Missing"), actor="ops")
    assert (
        missing.reason
        == "looking at the Apache HTTP Path: the Apache HTTP Path C:\\Missing does not exist on the server"
    )
    unknown = check_connectivity(
        _windows_server(
            smbd, server_type="tomcat", apache_path=None, tomcat_path="C:\\Apache24", service_name="NoSuchSvc"
        ),
        actor="ops",
    )
    assert unknown.reason is not None
    assert unknown.reason.startswith("looking up the service NoSuchSvc: ")
    assert "no such service" in unknown.reason


def test_a_connection_dropped_mid_write_leaves_the_old_file_whole(smbd: Smbd) -> None:
    import os
    import signal
    import threading
    import time

    from certfleet.connectors.errors import TransientConnectorError

    folder = _folder(smbd, "dropped")
    put_file(folder / "site.pem", b"old\r\n")
    transport = _transport(smbd)
    session = transport.connect()
    client = smbd.serving(session.connection.transport._sock.getsockname()[1])
    failure: list[BaseException] = []

    def write() -> None:
        try:
            transport.write_atomic("C:\\dropped\\site.pem", b"N" * (64 << 20), 0o644)
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the temporary file is being written: drop the connection now
        temps = [p for p in folder.iterdir() if p.name.endswith(".certfleet-tmp") and p.stat().st_size > 0]
        if temps:
            break
        time.sleep(0.005)
    assert temps, "the write never started"
    os.kill(client, signal.SIGKILL)  # the smbd process serving this connection: the connection drops
    writer.join(60)
    assert not writer.is_alive()
    assert len(failure) == 1
    assert isinstance(failure[0], TransientConnectorError), failure
    assert "C:\\dropped\\site.pem" in str(failure[0])
    assert (folder / "site.pem").read_bytes() == b"old\r\n"  # the real path was never touched
    with _transport(smbd) as again:  # a new session sees the old file
        assert again.read("C:\\dropped\\site.pem") == b"old\r\n"


def test_file_discovery_lists_and_reads_certificate_files_over_smb(smbd: Smbd) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    from certfleet.inventory.files import scan_folders
    from certfleet.pki.keys import load_private_key
    from tests.integration.pki_kit import issued_bundle

    pem, der, p12 = (issued_bundle(f"{n}.example.test") for n in ("pem", "der", "p12"))
    leaf = x509.load_pem_x509_certificate(der.leaf_pem)
    folder = _folder(smbd, "certs")
    sub = make_folder(folder / "sub")
    put_file(folder / "site.PEM", pem.fullchain_pem.replace(b"\n", b"\r\n"))
    put_file(sub / "other.der", leaf.public_bytes(Encoding.DER))
    store = pkcs12.serialize_key_and_certificates(
        b"p12", load_private_key(p12.key_pem), x509.load_pem_x509_certificate(p12.leaf_pem), None,
        BestAvailableEncryption(b"changeit"),
    )  # fmt: skip
    put_file(folder / "store.pfx", store)
    put_file(folder / "notes.txt", pem.leaf_pem)  # not a certificate file's name
    put_file(folder / "huge.pem", pem.leaf_pem + b"#" * (2 << 20))  # larger than discovery reads
    with _transport(smbd) as transport:
        assert transport.list_files("C:\\certs", ("*.pem", "*.der", "*.pfx"), 6, 1 << 20) == [
            "C:\\certs\\site.PEM", "C:\\certs\\store.pfx", "C:\\certs\\sub\\other.der",
        ]  # fmt: skip
        scan = scan_folders(transport, ["C:\\certs", "C:\\missing"])
    assert sorted((c.path, c.chain[0].subject.rfc4514_string()) for c in scan.chains) == [
        ("C:\\certs\\site.PEM", "CN=pem.example.test"),
        ("C:\\certs\\store.pfx", "CN=p12.example.test"),
        ("C:\\certs\\sub\\other.der", "CN=der.example.test"),
    ]
    assert scan.listed == ["C:\\certs"]
    assert len(scan.errors) == 1
    assert "C:\\missing" in scan.errors[0]

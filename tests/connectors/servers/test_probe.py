"""The probe is the evidence that a deployment is live, so its answers and its errors must be exact."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.connectors.errors import ConnectorError
from certfleet.connectors.servers.probe import ProbeError, fetch_served_chain, wait_for_serial

HOST = "127.0.0.1"
SERIAL_OLD = 0x5EED0001
SERIAL_NEW = 0x5EED0002


def write_pair(directory: Path, serial: int) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{serial:x}.crt", directory / f"{serial:x}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsServer:
    """In-process TLS server that records SNI names and switches certificate after N handshakes."""

    def __init__(self, first: ssl.SSLContext, second: ssl.SSLContext | None = None, switch_after: int = 0) -> None:
        self.contexts = [first, second or first]
        self.switch_after = switch_after
        self.handshakes = 0
        self.server_names: list[str | None] = []
        for context in self.contexts:
            context.sni_callback = self._record
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _record(self, sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            context = self.contexts[1 if self.handshakes >= self.switch_after else 0]
            self.handshakes += 1
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return server_context(*write_pair(tmp_path, SERIAL_OLD)), server_context(*write_pair(tmp_path, SERIAL_NEW))


@pytest.fixture
def server(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[TlsServer]:
    srv = TlsServer(contexts[0])
    yield srv
    srv.close()


def closed_port() -> int:
    with socket.create_server((HOST, 0)) as sock:
        return int(sock.getsockname()[1])


def test_returns_served_leaf_and_sends_sni(server: TlsServer) -> None:
    chain = fetch_served_chain(HOST, server.port, server_name="www.example.test")

    assert [cert.serial_number for cert in chain] == [SERIAL_OLD]
    assert server.server_names == ["www.example.test"]


@pytest.mark.parametrize("name", [None, "", "127.0.0.1", "::1", "[2001:db8::1]"])
def test_no_sni_for_ip_literals_or_missing_name(server: TlsServer, name: str | None) -> None:
    assert fetch_served_chain(HOST, server.port, server_name=name)[0].serial_number == SERIAL_OLD
    assert server.server_names == [None]


def test_connection_refused() -> None:
    port = closed_port()
    with pytest.raises(ProbeError) as excinfo:
        fetch_served_chain(HOST, port, server_name="www.example.test")
    assert str(excinfo.value) == f"{HOST}:{port}: connection refused"
    assert isinstance(excinfo.value, ConnectorError)


def test_plain_tcp_server_that_never_speaks_times_out() -> None:
    with socket.create_server((HOST, 0)) as silent:  # the kernel completes the connect; nobody answers
        port = silent.getsockname()[1]
        with pytest.raises(ProbeError) as excinfo:
            fetch_served_chain(HOST, port, server_name="www.example.test", timeout=0.3)
    assert str(excinfo.value) == f"{HOST}:{port}: TLS handshake timed out after 0.3 s"


def test_plain_http_server_fails_the_handshake() -> None:
    with socket.create_server((HOST, 0)) as plain:
        port = plain.getsockname()[1]

        def answer_in_plain_text() -> None:
            conn, _ = plain.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)

        thread = threading.Thread(target=answer_in_plain_text, daemon=True)
        thread.start()
        with pytest.raises(ProbeError) as excinfo:
            fetch_served_chain(HOST, port, server_name="www.example.test", timeout=5)
        thread.join(5)
    assert str(excinfo.value).startswith(f"{HOST}:{port}: TLS handshake failed: ")
    assert "timed out" not in str(excinfo.value)


def test_wait_for_serial_polls_until_the_new_certificate_is_served(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    srv = TlsServer(contexts[0], contexts[1], switch_after=3)  # a "reload" that lands on the 4th handshake
    try:
        leaf = wait_for_serial(
            HOST, srv.port, server_name="www.example.test", expected_serial=SERIAL_NEW, interval=0.01
        )
    finally:
        srv.close()
    assert leaf.serial_number == SERIAL_NEW
    assert srv.handshakes == 4


def test_wait_for_serial_timeout_names_expected_and_served_serials(server: TlsServer) -> None:
    with pytest.raises(ProbeError) as excinfo:
        wait_for_serial(
            HOST,
            server.port,
            server_name="www.example.test",
            expected_serial=SERIAL_NEW,
            timeout=0.5,
            interval=0.05,
        )
    assert str(excinfo.value) == (
        f"{HOST}:{server.port}: expected serial 5EED0002 was not served within 0.5 s; still serving serial 5EED0001"
    )
    assert server.handshakes >= 2


def test_wait_for_serial_timeout_reports_last_connection_error() -> None:
    port = closed_port()
    with pytest.raises(ProbeError) as excinfo:
        wait_for_serial(HOST, port, server_name=None, expected_serial=0xABC, timeout=0.3, interval=0.05)
    assert str(excinfo.value) == (
        f"{HOST}:{port}: expected serial 0ABC was not served within 0.3 s; "
        f"last error: {HOST}:{port}: connection refused"
    )

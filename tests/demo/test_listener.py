"""The demo listener must treat certificate files like nginx: serve, test, reload, keep old on failure."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.connectors.servers.probe import fetch_served_chain, wait_for_serial
from certfleet.demo.listener import ListenerProcess, ListenerStartError, free_port

HOST = "127.0.0.1"
SERIAL_A = 0x1A2B3C4D5E6F
SERIAL_B = 0x6F5E4D3C2B1A
SERIAL_C = 0x0C0FFEE


@dataclass(frozen=True)
class Pair:
    serial: int
    cert_pem: bytes
    key_pem: bytes


def make_pair(
    serial: int, cn: str = "www.example.test", issuer: tuple[Pair, ec.EllipticCurvePrivateKey] | None = None
) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    if issuer is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_name = x509.load_pem_x509_certificate(issuer[0].cert_pem).subject
        signing_key = issuer[1]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Pair(serial, cert.public_bytes(serialization.Encoding.PEM), key_pem)


@pytest.fixture(scope="module")
def pairs() -> dict[str, Pair]:
    return {"a": make_pair(SERIAL_A), "b": make_pair(SERIAL_B), "c": make_pair(SERIAL_C)}


@pytest.fixture
def files(tmp_path: Path, pairs: dict[str, Pair]) -> tuple[Path, Path]:
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    cert.write_bytes(pairs["a"].cert_pem)
    key.write_bytes(pairs["a"].key_pem)
    return cert, key


@pytest.fixture
def listener(tmp_path: Path, files: tuple[Path, Path]) -> Iterator[ListenerProcess]:
    cert, key = files
    with ListenerProcess.start(HOST, free_port(), cert, key, workdir=tmp_path / "run") as proc:
        yield proc


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def listener_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "certfleet.demo.listener", *args])


def https_get(port: int, server_name: str | None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((HOST, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
        return data


def served_serial(port: int, server_name: str | None = "www.example.test", timeout: float = 10) -> int:
    return fetch_served_chain(HOST, port, server_name=server_name, timeout=timeout)[0].serial_number


# --- serve -------------------------------------------------------------------------------------------


def test_serves_certificate_over_http_with_serial_and_sni(listener: ListenerProcess) -> None:
    response = https_get(listener.port, "www.example.test")

    body = f"certfleet demo listener\nserial: {SERIAL_A:X}\nserver_name: www.example.test\n".encode()
    assert response == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    assert listener.pidfile.read_text() == f"{listener.pid}\n"
    assert listener.ready_file.read_text() == "ready"
    assert f"listening on {HOST}:{listener.port}, serving serial {SERIAL_A:X}" in listener.log_text()


def test_same_certificate_for_every_server_name(listener: ListenerProcess) -> None:
    assert served_serial(listener.port, "a.example.test") == SERIAL_A
    assert served_serial(listener.port, "other.example.org") == SERIAL_A
    assert served_serial(listener.port, None) == SERIAL_A
    assert https_get(listener.port, "other.example.org").endswith(b"server_name: other.example.org\n")
    assert https_get(listener.port, None).endswith(b"server_name: -\n")


def test_slow_client_does_not_block_concurrent_handshakes(listener: ListenerProcess) -> None:
    # The idle client holds its connection for the listener's 10 s client timeout; a server that
    # handshakes in its accept loop would make these 2 s probes fail.
    with (
        socket.create_connection((HOST, listener.port), timeout=10),  # connects, never says a word
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        serials = list(pool.map(lambda _: served_serial(listener.port, timeout=2), range(40)))
    assert serials == [SERIAL_A] * 40


def test_cert_file_with_full_chain_and_separate_chain_file(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _self_signed_ca(ca_key)
    leaf = make_pair(SERIAL_B, issuer=(ca, ca_key))
    cert, key, chain = tmp_path / "leaf.crt", tmp_path / "leaf.key", tmp_path / "chain.crt"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    chain.write_bytes(ca.cert_pem)
    fullchain = tmp_path / "fullchain.crt"
    fullchain.write_bytes(leaf.cert_pem + ca.cert_pem)
    expected_length = 2 if hasattr(ssl.SSLSocket, "get_unverified_chain") else 1  # 3.11 exposes the leaf only

    for cert_path, chain_path in ((cert, chain), (fullchain, None)):
        with ListenerProcess.start(HOST, free_port(), cert_path, key, chain_path, workdir=tmp_path) as proc:
            served = fetch_served_chain(HOST, proc.port, server_name="www.example.test")
            assert [c.serial_number for c in served][:1] == [SERIAL_B]
            assert len(served) == expected_length
            assert run(proc.check_command()).returncode == 0


def _self_signed_ca(key: ec.EllipticCurvePrivateKey) -> Pair:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Demo CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(SERIAL_C)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Pair(SERIAL_C, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def test_sigterm_stops_cleanly_and_removes_pidfile(listener: ListenerProcess) -> None:
    assert listener.pidfile.exists()
    assert listener.stop() == 0
    assert not listener.pidfile.exists()
    assert not listener.ready_file.exists()
    assert "received SIGTERM, stopping" in listener.log_text()


def test_start_fails_with_stderr_when_files_are_bad(tmp_path: Path, pairs: dict[str, Pair]) -> None:
    cert, key = tmp_path / "x.crt", tmp_path / "x.key"
    cert.write_bytes(pairs["a"].cert_pem)
    key.write_bytes(pairs["b"].key_pem)

    with pytest.raises(ListenerStartError) as excinfo:
        ListenerProcess.start(HOST, free_port(), cert, key, workdir=tmp_path)

    message = str(excinfo.value)
    assert "exited with status 1 before it was ready" in message
    assert f"cannot start: key {key} does not match certificate {cert}" in message


def test_start_fails_when_port_is_taken(tmp_path: Path, files: tuple[Path, Path]) -> None:
    with socket.create_server((HOST, 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ListenerStartError, match=rf"cannot listen on {HOST}:{port}: Address already in use"):
            ListenerProcess.start(HOST, port, *files, workdir=tmp_path)


# --- reload ------------------------------------------------------------------------------------------


def test_reload_command_switches_served_serial(
    listener: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    assert served_serial(listener.port) == SERIAL_A
    cert.write_bytes(pairs["b"].cert_pem)
    key.write_bytes(pairs["b"].key_pem)

    result = run(listener.reload_command())

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"sent SIGHUP to listener {listener.pid}\n",
        "",
    )
    leaf = wait_for_serial(HOST, listener.port, server_name="www.example.test", expected_serial=SERIAL_B)
    assert leaf.serial_number == SERIAL_B
    assert f"reloaded: now serving serial {SERIAL_B:X}" in listener.log_text()
    assert https_get(listener.port, "www.example.test").endswith(
        f"serial: {SERIAL_B:X}\nserver_name: www.example.test\n".encode()
    )


def test_failed_reload_keeps_old_certificate_like_nginx(
    listener: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    # New certificate with the key of another certificate: the reload must be refused.
    cert.write_bytes(pairs["b"].cert_pem)
    key.write_bytes(pairs["c"].key_pem)
    listener.reload()
    log = listener.wait_for_log("reload failed")
    assert f"reload failed: key {key} does not match certificate {cert}; still serving serial {SERIAL_A:X}" in log
    assert listener.is_running()
    assert served_serial(listener.port) == SERIAL_A

    # A missing file is refused as well.
    cert.unlink()
    listener.reload()
    log = listener.wait_for_log("reload failed", count=2)
    assert f"reload failed: certificate file {cert} does not exist; still serving serial {SERIAL_A:X}" in log
    assert served_serial(listener.port) == SERIAL_A

    # Garbage is refused.
    cert.write_bytes(b"this is not a certificate\n")
    listener.reload()
    log = listener.wait_for_log("reload failed", count=3)
    assert f"reload failed: certificate file {cert} is not PEM: no certificate found;" in log
    assert served_serial(listener.port) == SERIAL_A

    # Once the files are consistent again, the next reload succeeds.
    cert.write_bytes(pairs["b"].cert_pem)
    key.write_bytes(pairs["b"].key_pem)
    listener.reload()
    wait_for_serial(HOST, listener.port, server_name="www.example.test", expected_serial=SERIAL_B)
    assert listener.is_running()


def test_reload_with_stale_pidfile_fails_clearly(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text(f"{finished.pid}\n")

    result = listener_cli("reload", "--pidfile", str(pidfile))

    assert result.returncode == 1
    assert result.stderr == (
        f"reload failed: process {finished.pid} from pidfile {pidfile} is not running (stale pidfile)\n"
    )


def test_reload_refuses_to_signal_a_process_that_is_not_a_listener(tmp_path: Path) -> None:
    pidfile = tmp_path / "reused.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # pytest itself: a SIGHUP would kill this test run

    result = listener_cli("reload", "--pidfile", str(pidfile))

    assert result.returncode == 1
    assert result.stderr == (
        f"reload failed: process {os.getpid()} from pidfile {pidfile} is not a demo listener (stale pidfile)\n"
    )


def test_reload_with_missing_or_garbage_pidfile(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pid"
    result = listener_cli("reload", "--pidfile", str(missing))
    assert (result.returncode, result.stderr) == (
        1,
        f"reload failed: pidfile {missing} does not exist; is the listener running?\n",
    )

    garbage = tmp_path / "garbage.pid"
    garbage.write_text("nginx\n")
    result = listener_cli("reload", "--pidfile", str(garbage))
    assert (result.returncode, result.stderr) == (
        1,
        f"reload failed: pidfile {garbage} does not contain a pid\n",
    )


# --- check (nginx -t) ----------------------------------------------------------------------------------


def test_check_accepts_matching_files(files: tuple[Path, Path]) -> None:
    cert, key = files
    result = listener_cli("check", "--cert", str(cert), "--key", str(key))
    assert (result.returncode, result.stdout, result.stderr) == (0, "configuration ok\n", "")


def test_check_command_of_a_listener_runs(listener: ListenerProcess, files: tuple[Path, Path]) -> None:
    cert, key = files
    assert listener.check_command() == [
        sys.executable,
        "-m",
        "certfleet.demo.listener",
        "check",
        "--cert",
        str(cert),
        "--key",
        str(key),
    ]
    assert run(listener.check_command()).stdout == "configuration ok\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("mismatch", "key {key} does not match certificate {cert}"),
        ("missing_cert", "certificate file {cert} does not exist"),
        ("missing_key", "key file {key} does not exist"),
        ("cert_not_pem", "certificate file {cert} is not PEM: no certificate found"),
        ("key_not_pem", "key file {key} is not PEM: no private key found"),
        ("cert_block_garbage", "certificate file {cert}: certificate #1 is not a valid certificate"),
        ("missing_chain", "chain file {chain} does not exist"),
    ],
)
def test_check_rejects_broken_files(tmp_path: Path, pairs: dict[str, Pair], case: str, expected: str) -> None:
    cert, key, chain = tmp_path / "site.crt", tmp_path / "site.key", tmp_path / "chain.crt"
    cert.write_bytes(pairs["a"].cert_pem)
    key.write_bytes(pairs["a"].key_pem)
    args = ["check", "--cert", str(cert), "--key", str(key)]
    if case == "mismatch":
        key.write_bytes(pairs["b"].key_pem)
    elif case == "missing_cert":
        cert.unlink()
    elif case == "missing_key":
        key.unlink()
    elif case == "cert_not_pem":
        cert.write_bytes(b"\x30\x82\x01\x00 binary DER-ish junk")
    elif case == "key_not_pem":
        key.write_bytes(b"hello\n")
    elif case == "cert_block_garbage":
        cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    elif case == "missing_chain":
        args += ["--chain", str(chain)]

    result = listener_cli(*args)

    message = expected.format(cert=cert, key=key, chain=chain)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"configuration test failed: {message}\n",
    )


def test_check_rejects_encrypted_key(tmp_path: Path, pairs: dict[str, Pair]) -> None:
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    cert.write_bytes(pairs["a"].cert_pem)
    private = serialization.load_pem_private_key(pairs["a"].key_pem, password=None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    result = run([sys.executable, "-m", "certfleet.demo.listener", "check", "--cert", str(cert), "--key", str(key)])
    assert result.returncode == 1
    assert result.stderr == (
        f"configuration test failed: key file {key} is encrypted; the listener needs an unencrypted key\n"
    )


# --- many sites on one port (--sites) ----------------------------------------------------------------


def _site(sites: Path, name: str, pair: Pair) -> None:
    (sites / name).mkdir(exist_ok=True)
    (sites / name / "fullchain.pem").write_bytes(pair.cert_pem)
    (sites / name / "privkey.pem").write_bytes(pair.key_pem)


def test_sites_are_chosen_by_sni_tested_together_and_reloaded(tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    one, two, three = (make_pair(s, f"{n}.example.test") for s, n in ((11, "one"), (22, "two"), (33, "three")))
    _site(sites, "one.example.test", one)
    _site(sites, "two.example.test", two)
    listener = ListenerProcess.for_sites(HOST, free_port(), sites, workdir=tmp_path / "run")
    listener.launch()
    try:
        assert served_serial(listener.port, "one.example.test") == 11
        assert served_serial(listener.port, "two.example.test") == 22
        assert served_serial(listener.port, "unknown.example.test") == 11  # the first name answers the rest
        assert https_get(listener.port, "two.example.test").endswith(b"serial: 16\nserver_name: two.example.test\n")
        assert run(listener.check_command()).returncode == 0
        # One broken site fails the whole test, as `nginx -t` does, and a reload then keeps every site as it was.
        (sites / "two.example.test" / "privkey.pem").write_bytes(three.key_pem)
        checked = run(listener.check_command())
        assert checked.returncode == 1
        assert "two.example.test/privkey.pem does not match certificate" in checked.stderr
        assert run(listener.reload_command()).returncode == 0
        listener.wait_for_log("reload failed")
        assert served_serial(listener.port, "two.example.test") == 22
        _site(sites, "two.example.test", three)
        assert run(listener.reload_command()).returncode == 0
        wait_for_serial(HOST, listener.port, server_name="two.example.test", expected_serial=33)
        assert served_serial(listener.port, "one.example.test") == 11
    finally:
        listener.stop()


# --- the control socket (check and reload without a new interpreter importing ssl) ---------------------


@pytest.fixture
def controlled(files: tuple[Path, Path]) -> Iterator[ListenerProcess]:
    """A listener with a control socket (a short work directory: a Unix socket's path is limited)."""
    cert, key = files
    workdir = Path(tempfile.mkdtemp(prefix="ctl-"))
    with ListenerProcess.start(HOST, free_port(), cert, key, workdir=workdir) as proc:
        assert proc.control_path is not None
        yield proc
    shutil.rmtree(workdir, ignore_errors=True)


def test_the_control_check_accepts_good_files_and_changes_nothing(
    controlled: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    assert controlled.control_check_command()[1:3] == ["-I", "-S"]  # no site-packages: a bare interpreter start
    assert stat.S_IMODE(os.stat(controlled.control_path or "").st_mode) == 0o600
    cert.write_bytes(pairs["b"].cert_pem)
    key.write_bytes(pairs["b"].key_pem)
    result = run(controlled.control_check_command())
    assert (result.returncode, result.stdout, result.stderr) == (0, "configuration ok\n", "")
    assert served_serial(controlled.port) == SERIAL_A  # a check is no reload


def test_the_control_check_refuses_a_bad_certificate(
    controlled: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    cert.write_bytes(pairs["b"].cert_pem)  # key stays A's: they do not match
    result = run(controlled.control_check_command())
    assert result.returncode == 1
    assert result.stderr == f"configuration test failed: key {key} does not match certificate {cert}\n"
    cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    result = run(controlled.control_check_command())
    assert result.returncode == 1
    assert "certificate #1 is not a valid certificate" in result.stderr
    assert served_serial(controlled.port) == SERIAL_A


def test_a_control_reload_serves_the_new_certificate_when_it_returns(
    controlled: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    cert.write_bytes(pairs["b"].cert_pem)
    key.write_bytes(pairs["b"].key_pem)
    result = run(controlled.control_reload_command())
    assert (result.returncode, result.stdout, result.stderr) == (0, f"reloaded: now serving serial {SERIAL_B:X}\n", "")
    assert served_serial(controlled.port) == SERIAL_B  # no waiting: the answer came after the swap


def test_a_control_reload_of_bad_files_fails_and_keeps_the_old_certificate(
    controlled: ListenerProcess, files: tuple[Path, Path], pairs: dict[str, Pair]
) -> None:
    cert, key = files
    key.write_bytes(pairs["b"].key_pem)
    result = run(controlled.control_reload_command())
    assert result.returncode == 1
    assert result.stderr == (
        f"reload failed: key {key} does not match certificate {cert}; still serving serial {SERIAL_A:X}\n"
    )
    assert served_serial(controlled.port) == SERIAL_A


def test_the_control_socket_goes_with_the_listener(controlled: ListenerProcess) -> None:
    path = controlled.control_path
    assert path is not None
    assert path.is_socket()
    assert controlled.stop() == 0
    assert not path.exists()
    result = run(controlled.control_check_command())
    assert result.returncode == 1
    assert result.stderr.startswith(f"check failed: cannot reach the listener at {path}: ")


def test_a_listener_whose_control_path_is_too_long_keeps_the_commands_that_start_the_module(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    deep = tmp_path / ("d" * 100)
    proc = ListenerProcess(HOST, free_port(), *files, workdir=deep)
    assert proc.control_path is None
    assert "--control" not in proc.serve_command()
    assert proc.control_check_command() == proc.check_command()
    assert proc.control_reload_command() == proc.reload_command()


def test_the_control_client_refuses_unknown_actions(controlled: ListenerProcess) -> None:
    command = controlled.control_check_command()
    result = run([*command[:-1], "stop"])
    assert (result.returncode, result.stderr) == (2, "usage: listener_ctl.py SOCKET check|reload\n")

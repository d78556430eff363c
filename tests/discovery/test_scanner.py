"""The asyncio scanner against real TLS listeners on loopback: it reads every chain as served, weak or not,
and says in one line why an endpoint gave none."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from certfleet.demo.listener import free_port
from certfleet.discovery.scanner import ScanOptions, scan_sync
from certfleet.discovery.targets import Endpoint
from tests.discovery.certs import NAMES, Served
from tests.discovery.fixtures import VHOST, Farm


def ep(port: int, sni: str | None = None) -> Endpoint:
    return Endpoint("127.0.0.1", "127.0.0.1", port, sni)


def ders(served: Served) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in served.chain)


def test_reads_every_chain_as_served(farm: Farm, fleet: dict[str, Served]) -> None:
    results = {r.endpoint.port: r for r in scan_sync([ep(farm.ports[n]) for n in NAMES], ScanOptions(concurrency=3))}
    for name in NAMES:
        result = results[farm.ports[name]]
        assert result.error is None, name
        assert result.chain == ders(fleet[name]), name  # leaf and intermediate, byte for byte
    assert len(results[farm.ports["self_signed"]].chain) == 1


def test_sni_picks_the_virtual_host(farm: Farm, fleet: dict[str, Served]) -> None:
    with_name, without = scan_sync([ep(farm.vhost, VHOST), ep(farm.vhost)])
    by_sni = {r.endpoint.sni: r.chain for r in (with_name, without)}
    assert by_sni[VHOST] == ders(fleet["good"])
    assert by_sni[None] == ders(fleet["sha1"])


def test_refused_port() -> None:
    (result,) = scan_sync([ep(free_port())])
    assert (result.chain, result.error) == ((), "connection refused")


@pytest.fixture
def plain_server() -> Iterator[int]:
    """A TCP server that answers like HTTP and closes: not TLS."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_port_that_does_not_speak_tls(plain_server: int) -> None:
    (result,) = scan_sync([ep(plain_server)])
    assert result.chain == ()
    assert result.error is not None
    assert result.error.startswith("TLS handshake failed")
    assert "does not speak TLS" in result.error


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections (the kernel does) and never says a word."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield server.getsockname()[1]
    server.close()


def test_handshake_timeout(silent_server: int) -> None:
    (result,) = scan_sync([ep(silent_server)], ScanOptions(handshake_timeout=0.3))
    assert (result.chain, result.error) == ((), "TLS handshake timed out after 0.3 s")


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: Linux drops further SYNs, so a connect never completes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def test_connect_timeout(full_backlog: int) -> None:
    (result,) = scan_sync([ep(full_backlog)], ScanOptions(connect_timeout=0.3, handshake_timeout=0.3))
    assert result.chain == ()
    # Depending on the kernel the dropped SYN shows up while connecting or right after: both are timeouts.
    assert result.error in {"connect timed out after 0.3 s", "TLS handshake timed out after 0.3 s"}


def test_many_endpoints_with_little_concurrency(farm: Farm, fleet: dict[str, Served]) -> None:
    """More endpoints than workers: every endpoint is scanned once, none is lost."""
    endpoints = [ep(farm.ports[n]) for n in NAMES] * 1 + [ep(farm.second_good), ep(free_port())]
    results = scan_sync(endpoints, ScanOptions(concurrency=2))
    assert sorted(r.endpoint.port for r in results) == sorted(e.port for e in endpoints)
    assert sum(1 for r in results if r.chain) == len(NAMES) + 1

"""The asyncio TLS scanner: handshake with many endpoints at once and keep the certificate chain each serves.

Each connection is a non-blocking socket driven by the event loop and an `ssl.SSLObject` over memory
buffers, which costs less per handshake than asyncio's stream machinery; a fixed pool of workers pulls
endpoints from one iterator, so a /16 is not 65,536 coroutines. Verification is off on purpose: the
question is which certificate is served, and an expired, self-signed or SHA-1 chain must still be read,
so the client also accepts old protocol versions and weak keys (OpenSSL security level 0).

The result for an endpoint is the chain as the server sent it (DER, leaf first) or one line saying why
there is none: refused, timed out, not TLS, handshake failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from certfleet.discovery.fdlimit import raise_fd_limit
from certfleet.discovery.targets import Endpoint

_ENCODING_DER: int = getattr(getattr(ssl, "_ssl"), "ENCODING_DER", 2)  # noqa: B009 - private C module
_RECV_BYTES = 65536


@dataclass(frozen=True)
class ScanOptions:
    """How hard to push: connections in flight, and how long to wait for TCP and for the TLS handshake.

    A plain dataclass, not a pydantic model: the scan process imports this module, and pydantic alone
    would add a third of a second to its start."""

    concurrency: int = 200  # connections in flight at once
    connect_timeout: float = 3.0  # seconds to wait for the TCP connect
    handshake_timeout: float = 5.0  # seconds to wait for the handshake

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 20000:
            raise ValueError(f"concurrency {self.concurrency} must be between 1 and 20000 connections")
        for name in ("connect_timeout", "handshake_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 120:
                raise ValueError(f"{name.replace('_', ' ')} {value:g} s must be above 0 and at most 120 seconds")


class ScanResult(NamedTuple):
    endpoint: Endpoint
    chain: tuple[bytes, ...]  # DER, leaf first; empty when the endpoint gave no certificate
    error: str | None  # why there is no chain

    @property
    def answered(self) -> bool:
        return bool(self.chain)


def client_context() -> ssl.SSLContext:
    """A client that completes a handshake with anything that still speaks TLS, and verifies nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")  # RSA-1024 and SHA-1 servers must still be seen
    context.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    return context


def served_chain(tls: ssl.SSLObject) -> tuple[bytes, ...]:
    """The chain the server sent, leaf first. Python 3.13 made this public; 3.10-3.12 have it on `_sslobj`."""
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    ders: list[bytes] = []
    if getter is not None:
        for item in getter() or ():
            ders.append(item if isinstance(item, bytes) else item.public_bytes(_ENCODING_DER))
    leaf = tls.getpeercert(binary_form=True)
    if leaf and (not ders or ders[0] != leaf):
        ders = [leaf, *(der for der in ders if der != leaf)]
    return tuple(ders)


def _tls_failure(exc: ssl.SSLError) -> str:
    reason = exc.reason or str(exc)
    if reason in {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}:
        return f"TLS handshake failed: {reason} (the port does not speak TLS)"
    return f"TLS handshake failed: {reason}"


async def _send(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes) -> None:
    """Handshake flights fit the empty socket buffer: send at once, fall back to the loop only if not."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        await loop.sock_sendall(sock, data[sent:])


async def _handshake(
    loop: asyncio.AbstractEventLoop, context: ssl.SSLContext, endpoint: Endpoint, options: ScanOptions
) -> ScanResult:
    family = socket.AF_INET6 if ":" in endpoint.ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # out of descriptors: say so instead of failing the batch
        return ScanResult(endpoint, (), f"cannot open a socket: {exc.strerror or exc}")
    sock.setblocking(False)
    connected = False
    try:
        # One timer for both phases (rescheduled after the connect): a timer costs as much as a handshake step.
        async with asyncio.timeout(options.connect_timeout) as deadline:
            await loop.sock_connect(sock, (endpoint.ip, endpoint.port))
            connected = True
            deadline.reschedule(loop.time() + options.handshake_timeout)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname=endpoint.sni)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pending = outgoing.read()
                    if pending:
                        await _send(loop, sock, pending)
                    data = await loop.sock_recv(sock, _RECV_BYTES)
                    if not data:
                        return ScanResult(endpoint, (), "the server closed the connection during the handshake")
                    incoming.write(data)
    except TimeoutError:
        if connected:
            return ScanResult(endpoint, (), f"TLS handshake timed out after {options.handshake_timeout:g} s")
        return ScanResult(endpoint, (), f"connect timed out after {options.connect_timeout:g} s")
    except ssl.SSLError as exc:
        return ScanResult(endpoint, (), _tls_failure(exc))
    except ConnectionRefusedError:
        return ScanResult(endpoint, (), "connection refused" if not connected else "TLS handshake failed: refused")
    except OSError as exc:
        what = "TLS handshake failed" if connected else "cannot connect"
        return ScanResult(endpoint, (), f"{what}: {exc.strerror or exc}")
    else:
        pending = outgoing.read()  # our Finished: lets the server end its side cleanly; best effort
        if pending:
            with contextlib.suppress(OSError):
                sock.send(pending)
        chain = served_chain(tls)
        if not chain:
            return ScanResult(endpoint, (), "the server sent no certificate")
        return ScanResult(endpoint, chain, None)
    finally:
        sock.close()


async def scan(
    endpoints: Iterable[Endpoint],
    options: ScanOptions | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """Scan every endpoint once, at most `options.concurrency` at a time; results in completion order.

    `on_result` sees each result as it completes (a recorder can start writing before the scan ends); it
    runs on the event loop, so it must be quick.
    """
    options = options or ScanOptions()
    todo = list(endpoints)
    if not todo:
        return []
    raise_fd_limit(options.concurrency * 2 + 256)
    loop = asyncio.get_running_loop()
    context = client_context()
    results: list[ScanResult] = []
    pending = iter(todo)

    async def worker() -> None:
        for endpoint in pending:  # workers share the iterator: no task or semaphore per endpoint
            result = await _handshake(loop, context, endpoint, options)
            results.append(result)
            if on_result is not None:
                on_result(result)

    await asyncio.gather(*(worker() for _ in range(min(options.concurrency, len(todo)))))
    return results


def scan_sync(
    endpoints: Sequence[Endpoint],
    options: ScanOptions | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """`scan` on a fresh event loop, for threads and plain code."""
    return asyncio.run(scan(endpoints, options, on_result))

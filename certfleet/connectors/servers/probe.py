"""Prove which certificate a server actually serves, by connecting to it over TLS.

Copying files and running a reload command only says the deployment *ran*; the probe is the evidence
that the new certificate is *live*.  TLS verification is deliberately off: the question is which
certificate is served, not whether the system roots trust it (a private CA's chain must still be
identifiable).  Given the issuer's certificate, `wait_for_serial` proves the served leaf was signed by it,
so a certificate that merely carries the right serial is refused.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from certfleet.connectors.errors import ConnectorError
from certfleet.pki.parse import serial_hex

FIRST_INTERVAL = 0.025  # wait_for_serial's first pause; it doubles up to its `interval`


class ProbeError(ConnectorError):
    """The server could not be reached, refused TLS, or did not serve the expected certificate."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=4096)  # a batch probes each name twice; a name that is no IP raises twice inside
def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _sni(server_name: str | None) -> str | None:
    """SNI must be a hostname (RFC 6066 forbids IP literals), so IPs and empty names send none."""
    if not server_name or _is_ip_literal(server_name):
        return None
    return server_name


@functools.cache  # one for all probes: building a context costs more than a probe's own Python work
def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _as_der(item: Any) -> bytes:
    """Chain entries are DER bytes in CPython 3.13, ``_ssl.Certificate`` objects in some builds."""
    if isinstance(item, bytes):
        return item
    return ssl.PEM_cert_to_DER_cert(str(item.public_bytes()))  # public_bytes() defaults to PEM


def _served_ders(tls: ssl.SSLSocket) -> list[bytes]:
    leaf = tls.getpeercert(binary_form=True)
    if not leaf:
        return []
    # Python >= 3.13 exposes the whole chain the server sent; 3.11 only exposes the leaf.
    get_chain = getattr(tls, "get_unverified_chain", None)
    chain: list[bytes] = []
    if get_chain is not None:
        chain = [_as_der(item) for item in (get_chain() or [])]
    if not chain or chain[0] != leaf:
        chain = [leaf, *[der for der in chain if der != leaf]]
    return chain


def fetch_served_chain(
    host: str, port: int, *, server_name: str | None, timeout: float = 10.0
) -> list[x509.Certificate]:
    """Handshake with ``host:port`` (SNI = ``server_name``) and return the served chain, leaf first.

    ``timeout`` bounds the whole probe (connect plus handshake).  Every network or TLS failure is
    raised as ProbeError with a message naming the endpoint.
    """
    where = _where(host, port)
    limit = float(timeout)
    deadline = time.monotonic() + limit
    try:
        sock = socket.create_connection((host, port), timeout=limit)
    except ConnectionRefusedError:
        raise ProbeError(f"{where}: connection refused") from None
    except TimeoutError:
        raise ProbeError(f"{where}: connect timed out after {limit} s") from None
    except socket.gaierror as exc:
        raise ProbeError(f"{where}: cannot resolve host: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ProbeError(f"{where}: cannot connect: {exc.strerror or exc}") from None

    with sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            with _client_context().wrap_socket(sock, server_hostname=_sni(server_name)) as tls:
                ders = _served_ders(tls)
        except TimeoutError:
            raise ProbeError(f"{where}: TLS handshake timed out after {limit} s") from None
        except ssl.SSLError as exc:
            raise ProbeError(f"{where}: TLS handshake failed: {exc.reason or exc}") from None
        except ConnectionResetError:
            raise ProbeError(f"{where}: TLS handshake failed: connection reset by peer") from None
        except OSError as exc:
            raise ProbeError(f"{where}: TLS handshake failed: {exc.strerror or exc}") from None

    if not ders:
        raise ProbeError(f"{where}: the server sent no certificate")
    try:
        return [x509.load_der_x509_certificate(der) for der in ders]
    except ValueError as exc:
        raise ProbeError(f"{where}: the server sent an unparseable certificate: {exc}") from None


def load_issuers(issuer_pem: str | bytes) -> list[x509.Certificate]:
    """The issuer certificate(s) a served leaf must be signed by: PEM, the issuer first or a whole chain."""
    data = issuer_pem.encode("ascii", "replace") if isinstance(issuer_pem, str) else issuer_pem
    try:
        issuers = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ProbeError(f"the expected issuer certificate is not a PEM certificate: {exc}") from None
    return issuers


def check_issued_by(leaf: x509.Certificate, issuers: list[x509.Certificate], where: str) -> None:
    """Raise ProbeError unless one of `issuers` signed `leaf` (its name and its signature)."""
    named = [issuer for issuer in issuers if issuer.subject == leaf.issuer]
    for issuer in named:
        try:
            leaf.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return
    expected = " or ".join(dict.fromkeys(i.subject.rfc4514_string() for i in issuers)) or "no issuer"
    problem = (
        "its signature does not verify with that issuer's key"
        if named
        else (f"it names {leaf.issuer.rfc4514_string()!r} as its issuer")
    )
    raise ProbeError(
        f"{where}: serves serial {serial_hex(leaf.serial_number)}, but that certificate was not issued by "
        f"{expected}: {problem}; this is not the deployed certificate (an impostor or another CA's certificate "
        "with the same serial)"
    )


def _is_exactly(leaf: x509.Certificate, sha256: str | None) -> bool:
    return sha256 is not None and leaf.fingerprint(hashes.SHA256()).hex() == sha256.lower()


def wait_for_serial(
    host: str,
    port: int,
    *,
    server_name: str | None,
    expected_serial: int,
    timeout: float = 15.0,
    interval: float = 0.2,
    issuer_pem: str | bytes | None = None,
    expected_sha256: str | None = None,
) -> x509.Certificate:
    """Poll until the served leaf has ``expected_serial`` (a reload takes a moment); return that leaf.

    The pause between probes starts at FIRST_INTERVAL and doubles up to ``interval``.

    With ``issuer_pem`` (the issuing CA's certificate, PEM, optionally followed by its own chain) the
    leaf with the right serial must also be signed by that issuer, else ProbeError at once: the right
    serial from the wrong signer is a different certificate, and waiting will not change it. A leaf whose SHA-256
    fingerprint is ``expected_sha256`` (hex) is byte for byte the certificate deployed, so it needs no signature
    check; any other leaf with the serial still gets one.

    On timeout the ProbeError names the serial expected and what was last seen: the serial actually
    served, or the last connection error.
    """
    where = _where(host, port)
    issuers = load_issuers(issuer_pem) if issuer_pem is not None else None
    limit = float(timeout)
    deadline = time.monotonic() + limit
    last_seen = "nothing was probed"
    pause = min(FIRST_INTERVAL, interval)  # a reload is often done within milliseconds: look again soon at first
    while True:
        remaining = deadline - time.monotonic()
        try:
            leaf = fetch_served_chain(host, port, server_name=server_name, timeout=max(remaining, 0.05))[0]
        except ProbeError as exc:
            last_seen = f"last error: {exc}"
        else:
            if leaf.serial_number == expected_serial:
                if issuers is not None and not _is_exactly(leaf, expected_sha256):
                    check_issued_by(leaf, issuers, where)
                return leaf
            last_seen = f"still serving serial {serial_hex(leaf.serial_number)}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError(
                f"{where}: expected serial {serial_hex(expected_serial)} was not served within {limit} s; {last_seen}"
            )
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, interval)

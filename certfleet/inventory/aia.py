"""Fetch a chain's missing intermediates from the CA Issuers URLs its certificates name (RFC 5280 §4.2.2.1).

Off by default: certfleet then makes outbound HTTP requests to URLs written in certificates that users
upload, so an admin allows it with CERTFLEET_AIA_FETCH=true. Bounded: http and https URLs only, at most
MAX_FETCHES requests per chain, MAX_BYTES per answer, CERTFLEET_AIA_TIMEOUT_S per request (connect, read
and the whole answer), at most two redirects. A fetched certificate is appended only when it issued the
chain's top certificate (name and signature); roots are never appended. What failed is said in notes, and
the import goes on without it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from certfleet.inventory.chains import extend
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material

MAX_FETCHES = 4
MAX_BYTES = 64 * 1024


def ca_issuer_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [
        str(access.access_location.value)
        for access in aia
        if access.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(access.access_location, x509.UniformResourceIdentifier)
        and str(access.access_location.value).lower().startswith(("http://", "https://"))
    ]


def complete_from_aia(
    chain: Sequence[x509.Certificate], *, timeout: float, client: httpx.Client | None = None
) -> tuple[list[x509.Certificate], list[str]]:
    """The chain extended with what its CA Issuers URLs serve, and a note per URL that failed."""
    out, notes, fetches = list(chain), [], 0
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True, max_redirects=2)
    try:
        while out[-1].issuer != out[-1].subject and fetches < MAX_FETCHES:
            found: list[x509.Certificate] = []
            for url in ca_issuer_urls(out[-1])[: MAX_FETCHES - fetches]:
                fetches += 1
                try:
                    found = _fetch(http, url, timeout)
                except CertificateFormatError as exc:
                    notes.append(f"CA Issuers URL {url}: {exc}")
                    continue
                break
            longer = extend(out, found)
            if len(longer) == len(out):
                if found:
                    notes.append(
                        f"CA Issuers URL of {out[-1].subject.rfc4514_string()} served no certificate that issued it"
                    )
                break
            out = longer
    finally:
        if own:
            http.close()
    return out, notes


def _fetch(http: httpx.Client, url: str, timeout: float) -> list[x509.Certificate]:
    body = bytearray()
    deadline = time.monotonic() + timeout  # the per-read timeout alone lets a slow trickle go on for ever
    try:
        with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise CertificateFormatError(f"answered HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_BYTES:
                    raise CertificateFormatError(
                        f"answered more than {MAX_BYTES // 1024} KiB, which no CA certificate needs"
                    )
                if time.monotonic() > deadline:
                    raise CertificateFormatError(f"did not answer within {timeout:g} s")
    except httpx.TimeoutException:
        raise CertificateFormatError(f"did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise CertificateFormatError(f"cannot be fetched ({type(exc).__name__})") from None
    return load_material(bytes(body)).certificates  # DER, PEM or a certs-only PKCS#7 (.p7c)

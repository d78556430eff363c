"""File discovery on a server: find certificate files under its folders and read the chains they hold.

The server is reached through its `Transport` (local agent today; SSH and SMB plug in through
`certfleet.tasks.build.build_transport`), so one connection serves every file. Listing uses the
transport's own `list_files` when it has one (an SMB transport must, Windows has no `find`), otherwise
`find` through `Transport.run` (POSIX servers). Reading uses `Transport.read`.

What counts as a certificate file: PEM, DER, PKCS#7, PKCS#12 and Java keystores (JKS/JCEKS), by name
(see FILE_PATTERNS) and no larger than MAX_FILE_BYTES. What is recorded: end-entity certificates with the
chain the file holds. CA-only files (trust bundles such as ca-certificates.crt) and keystore trusted
entries are skipped, so the inventory holds the certificates servers present, not every root they trust.
Private keys found in files are never read into certfleet.

PKCS#12 files are opened without a password, then with the Java and vendor defaults in
DEFAULT_KEYSTORE_PASSWORDS; JKS certificates are readable without the store password (only keys are
encrypted in a JKS), so their integrity is not checked.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import jks
from cryptography import x509

from certfleet.connectors.errors import ConnectorError
from certfleet.connectors.servers.transport import Transport
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material, order_chain

FILE_PATTERNS = (
    "*.pem",
    "*.crt",
    "*.cer",
    "*.cert",
    "*.der",
    "*.p7b",
    "*.p7c",
    "*.pfx",
    "*.p12",
    "*.jks",
    "*.jceks",
    "*.keystore",
    "*.ks",
)
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 6
MAX_FILES = 5000
LIST_TIMEOUT_S = 60.0
DEFAULT_KEYSTORE_PASSWORDS = (b"changeit", b"changeme", b"password", b"secret")
_JKS_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")


@runtime_checkable
class FileListing(Protocol):
    """Optional transport capability: list files matching name patterns under a folder."""

    def list_files(self, root: str, patterns: Sequence[str], max_depth: int, max_bytes: int) -> list[str]: ...


@dataclass(frozen=True)
class FoundChain:
    path: str
    entry: str | None  # keystore alias when a file holds several chains
    chain: list[x509.Certificate]

    @property
    def locator_suffix(self) -> str:
        return f"{self.path}#{self.entry}" if self.entry else self.path


@dataclass
class FileScan:
    """What a scan of one server's folders produced."""

    chains: list[FoundChain] = field(default_factory=list)
    files_seen: list[str] = field(default_factory=list)  # every candidate file read
    listed: list[str] = field(default_factory=list)  # folders listed completely (files gone from them are gone)
    skipped: list[str] = field(default_factory=list)  # files with only CA certificates, one line each
    errors: list[str] = field(default_factory=list)  # folders or files that could not be read, one line each


def list_candidates(transport: Transport, root: str) -> list[str]:
    """Certificate-looking files under `root`; raises ConnectorError when the folder cannot be listed."""
    if isinstance(transport, FileListing):
        return transport.list_files(root, FILE_PATTERNS, MAX_DEPTH, MAX_FILE_BYTES)[:MAX_FILES]
    names = " -o ".join(f"-iname {shlex.quote(pattern)}" for pattern in FILE_PATTERNS)
    size = f"-{MAX_FILE_BYTES // 1024 + 1}k"
    # A backslashed parenthesis is a literal "(" both to shlex.split (local agent, no shell) and to a remote shell.
    command = f"find {shlex.quote(root)} -maxdepth {MAX_DEPTH} -type f -size {size} \\( {names} \\) -print"
    result = transport.run(command, timeout=LIST_TIMEOUT_S)
    paths = [line for line in result.output.splitlines() if line.startswith("/")]
    if result.exit_code != 0 and not paths:
        raise ConnectorError(f"{transport.label}: cannot list {root}: {result.tail(2) or 'find failed'}")
    return sorted(paths)[:MAX_FILES]


def chains_in_file(path: str, data: bytes, passwords: Sequence[bytes] = DEFAULT_KEYSTORE_PASSWORDS) -> list[FoundChain]:
    """The end-entity chains a file holds (empty for CA-only files). Raises CertificateFormatError."""
    if data[:4] in _JKS_MAGIC:
        return _keystore_chains(path, data)
    material = None
    for password in (None, *passwords):
        try:
            material = load_material(data, password)
            break
        except CertificateFormatError as exc:
            if "password" not in str(exc):
                raise
    if material is None:
        raise CertificateFormatError("PKCS#12 keystore needs a password certfleet does not know")
    return [FoundChain(path, None, chain) for chain in _end_entity_chains(material.certificates)]


def _end_entity_chains(certificates: Sequence[x509.Certificate]) -> list[list[x509.Certificate]]:
    """Each end-entity certificate of a file with the issuers the file holds for it."""
    if sum(1 for cert in certificates if cert.subject == cert.issuer) > 1:
        return []  # several roots: a trust bundle, not a server's certificate
    cas = [cert for cert in certificates if _is_ca(cert)]
    chains = []
    for cert in certificates:
        if cert in cas:
            continue
        chain = [cert]
        while chain[-1].subject != chain[-1].issuer:
            issuer = next((ca for ca in cas if ca.subject == chain[-1].issuer and ca not in chain), None)
            if issuer is None:
                break
            chain.append(issuer)
        chains.append(chain)
    return chains


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False  # no basic constraints (v1) or unreadable extensions: treat as a server's certificate


def _keystore_chains(path: str, data: bytes) -> list[FoundChain]:
    try:
        store = jks.KeyStore.loads(data, None, try_decrypt_keys=False)  # no password: certificates only
    except Exception as exc:  # pyjks raises its own exception types for malformed stores
        raise CertificateFormatError(f"the Java keystore cannot be read: {exc}") from exc
    found = []
    for alias, entry in sorted(store.private_keys.items()):
        try:
            chain = [x509.load_der_x509_certificate(der) for _, der in entry.cert_chain]
        except ValueError as exc:
            raise CertificateFormatError(f"keystore entry {alias!r} holds an unreadable certificate") from exc
        if chain:
            found.append(FoundChain(path, alias, order_chain(chain)))
    return found


def scan_folders(transport: Transport, roots: Sequence[str]) -> FileScan:
    """List and read every candidate file under `roots` through one transport."""
    scan = FileScan()
    paths: dict[str, None] = {}
    for root in roots:
        try:
            for path in list_candidates(transport, root):
                paths[path] = None
        except ConnectorError as exc:
            scan.errors.append(str(exc))
        else:
            scan.listed.append(root)
    for path in paths:
        try:
            data = transport.read(path)
        except ConnectorError as exc:
            scan.errors.append(str(exc))
            continue
        if data is None:
            continue  # removed between listing and reading
        scan.files_seen.append(path)
        if len(data) > MAX_FILE_BYTES:
            scan.skipped.append(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
            continue
        try:
            chains = chains_in_file(path, data)
        except CertificateFormatError as exc:
            if _looks_like_key_only(data):
                continue  # a private key file named .pem: not a certificate, not an error
            scan.errors.append(f"{transport.label}:{path}: {exc}")
            continue
        if not chains:
            scan.skipped.append(f"{path}: only CA certificates")
        scan.chains.extend(chains)
    return scan


def _looks_like_key_only(data: bytes) -> bool:
    return b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data

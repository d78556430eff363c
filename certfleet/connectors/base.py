"""The interfaces every CA and every server connector implements, and the values that cross them."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from cryptography import x509
from pydantic import BaseModel, ConfigDict

# CRLReason codes of RFC 5280 section 5.3.1, which most CA APIs take as a number (each accepts a subset).
RFC5280_REASON_CODES: dict[x509.ReasonFlags, int] = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}


class Profile(enum.StrEnum):
    TLS_SERVER = "tls-server"
    SMIME = "smime"


class IssueRequest(BaseModel):
    """One certificate request. `idempotency_key` lets CAs that support it refuse a duplicate order."""

    model_config = ConfigDict(frozen=True)

    csr_pem: str
    profile: Profile = Profile.TLS_SERVER
    validity_days: int | None = None
    idempotency_key: str
    # ARI CertID (RFC 9773) of the certificate this order renews; an ACME CA with renewalInfo gets it as the
    # order's `replaces`. Other CAs ignore it.
    replaces: str | None = None


class IssueResult(BaseModel):
    """Either the issued chain (leaf first, PEM) or the CA's id of an order that is still pending."""

    model_config = ConfigDict(frozen=True)

    ca_order_id: str | None = None
    pem_chain: str | None = None
    # The CA's own words for where the order stands (Validation Status) and for domain control validation
    # (DCV Status); None where the CA does not report them.
    validation_status: str | None = None
    dcv_status: str | None = None

    @property
    def issued(self) -> bool:
        return self.pem_chain is not None


class CertificateAuthority(Protocol):
    kind: ClassVar[str]

    def issue(self, request: IssueRequest) -> IssueResult: ...

    def status(self, ca_order_id: str) -> IssueResult: ...

    def revoke(self, serial_number: int, reason: x509.ReasonFlags) -> None: ...


@dataclass(frozen=True)
class CertificateBundle:
    """What gets installed. The key never appears in a repr, a log or a task result."""

    leaf_pem: bytes
    chain_pem: bytes  # intermediates, may be empty
    key_pem: bytes = field(repr=False)

    @property
    def fullchain_pem(self) -> bytes:
        return self.leaf_pem + self.chain_pem


@dataclass(frozen=True)
class FileWrite:
    """One file a handler wants replaced: written to a temp file, then renamed over the old one."""

    path: str
    data: bytes = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True)
class Backup:
    path: str
    backup_path: str
    existed: bool


@dataclass(frozen=True)
class UndoableChange:
    """A change on a server that is no file replacement (IIS: a certificate-store import and the rebinding of
    the site's HTTPS bindings). `measure()` reads what the change will replace and returns the undo data (plain
    JSON); the journal records it before `apply(undo)` runs, and the handler's `undo(action, data)` puts it back
    from any process, also after the worker that applied it died. Both must be safe to repeat."""

    action: str  # the journal step's action, e.g. "iis-binding"
    subject: str  # what it changes, in words (the journal's path column)
    measure: Callable[[], dict[str, Any]] = field(repr=False)
    apply: Callable[[dict[str, Any]], None] = field(repr=False)


class ServerHandler(Protocol):
    """A server-side home of a certificate, in certbot Installer verbs.

    Most changes are file replacements, so the journal, the backup and the restore are the same for every
    server kind; a handler decides which files to write and how to test and reload. A change that is no file
    (an IIS binding) is an `UndoableChange`: journalled with its own undo data, undone by `undo`.
    """

    kind: ClassVar[str]

    def plan(self, bundle: CertificateBundle) -> list[FileWrite]: ...

    def changes(self, bundle: CertificateBundle) -> list[UndoableChange]:
        """The changes besides files (most kinds: none): measured before any file is written, journalled and
        applied after the files are installed."""
        ...

    def undo(self, action: str, data: dict[str, Any]) -> None:
        """Put back one journalled `UndoableChange` from its undo data."""
        ...

    def snapshot(self, path: str, backup_path: str) -> Backup: ...

    def install(self, write: FileWrite) -> None: ...

    def verify(self) -> None: ...

    def activate(self) -> None: ...

    def restore(self, backup: Backup) -> None: ...

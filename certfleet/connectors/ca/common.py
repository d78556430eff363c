"""Small helpers the CA connectors share: what a CSR asks for, and turning CA answers into a PEM chain."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.bundle import chain_to_pem
from certfleet.pki.csr import csr_sans, load_csr
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import load_material


@dataclass(frozen=True)
class CsrNames:
    common_name: str
    sans: list[str]  # DNS names, IPs and emails, in CSR order

    @property
    def dns_names(self) -> list[str]:
        return [n for n in self.sans if "@" not in n]

    @property
    def emails(self) -> list[str]:
        return [n for n in self.sans if "@" in n]


def csr_names(csr_pem: str) -> CsrNames:
    """The names a CSR asks for; the common name falls back to the first SAN (CAs want one)."""
    try:
        csr = load_csr(csr_pem.encode())
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"the CSR is not usable: {exc}") from exc
    sans = csr_sans(csr)
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else (sans[0] if sans else "")
    if not common_name:
        raise PermanentConnectorError("the CSR names no common name and no subject alternative name")
    return CsrNames(common_name, sans)


def pem_chain_from(data: bytes | str, *, ca: str) -> str:
    """Whatever certificate container a CA sent (PEM, DER, PKCS#7), as PEM text, leaf first."""
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" in raw:  # only text: CR LF bytes inside DER are data
        raw = raw.replace(b"\r\n", b"\n")
    try:
        certificates = load_material(raw).certificates
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"{ca} sent a certificate certfleet cannot read: {exc}") from exc
    return chain_to_pem(certificates).decode("ascii")


def join_pem(*parts: str | None) -> str:
    """Concatenate PEM blocks a CA returned separately (leaf, intermediate, root), normalising line ends."""
    return "".join(p.replace("\r\n", "\n").strip() + "\n" for p in parts if p and p.strip())


def leaf_serial(pem_chain: str) -> int:
    return x509.load_pem_x509_certificate(pem_chain.encode()).serial_number

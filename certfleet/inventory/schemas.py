"""The typed inputs and outputs of the inventory service (see `certfleet.inventory.service`)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from certfleet import fields
from certfleet.input_model import InputModel
from certfleet.models.orm import CAType, CertificateStatus, DeploymentType, LocationStatus
from certfleet.pki.parse import CertificateInfo
from certfleet.pki.policy import RuleOutcome


class InventoryError(ValueError):
    """Input the inventory cannot act on; the message says what to fix, `field` names the input when one is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigurationRejected(InventoryError):
    """A configuration that cannot work; `problems` lists every reason, the message joins them."""

    def __init__(self, problems: list[tuple[str | None, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems), field=problems[0][0] if problems else None)


# --- Configure ----------------------------------------------------------------------------------------------

# The field rules of a certificate's labels (`certfleet.fields`), shared with the new-certificate request.
ORGANIZATION = fields.Name(200)
BATCH_NAME = fields.Name(120)
CERTIFICATE_NAME = fields.CertificateName()  # a CN or SAN of a TLS certificate, wildcards included
IGNORE_REASON = fields.Description(500)


class TargetInput(InputModel):
    """Where the certificate is installed: a registered server, the port that serves it, and its files."""

    server_id: int
    port: int = Field(ge=1, le=65535)
    server_name: str | None = Field(default=None, max_length=255, description="SNI name; the CN when empty")
    cert_path: str | None = Field(default=None, max_length=500)
    key_path: str | None = Field(default=None, max_length=500)
    chain_path: str | None = Field(default=None, max_length=500)


class ConfigureRequest(InputModel):
    """The Configure form: CA connector, provisioning bot, targets, key parameters, renewal policy."""

    ca_connector_id: int
    provisioning_bot_id: int
    targets: list[TargetInput] = Field(default_factory=list)
    key_spec: str = Field(default="rsa2048", description="rsa2048, rsa3072, rsa4096, ec-p256 or ec-p384")
    validity_days: int | None = Field(default=None, ge=1, le=3650, description="the connector's default when empty")
    renew_before_days: int = Field(default=30, ge=1, le=365, description="renew this many days before expiry")
    renew_before_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        allow_inf_nan=False,
        description="or when less than this share of the lifetime is left, whichever comes later; empty: the CA "
        "connector's default, else one third",
    )
    organization: Annotated[str, ORGANIZATION] | None = None
    tags: Annotated[list[str], fields.TagList()] = Field(default_factory=list)
    batch_name: Annotated[str, BATCH_NAME] | None = None


class TargetView(BaseModel):
    id: int
    server_id: int
    server: str
    port: int
    server_name: str | None
    cert_path: str | None
    key_path: str | None
    chain_path: str | None


class CertificateConfiguration(BaseModel):
    """A certificate's provisioning configuration as saved."""

    certificate_id: int
    ca_connector_id: int | None
    ca_connector: str | None
    provisioning_bot_id: int | None
    provisioning_bot: str | None
    key_spec: str
    validity_days: int | None
    renew_before_days: int
    renew_before_fraction: float | None
    organization: str | None
    tags: list[str]
    batch_name: str | None
    deployment_type: DeploymentType
    targets: list[TargetView]


# --- Download -----------------------------------------------------------------------------------------------


class DownloadFormat(enum.StrEnum):
    PEM = "pem"  # leaf, then the chain certfleet holds
    DER = "der"  # the leaf alone (.cer)
    PKCS7 = "pkcs7"  # the chain as a certificates-only PKCS#7 (.p7b, DER)
    PKCS12 = "pkcs12"  # key + chain (.pfx), only when certfleet holds the key; needs a password


class DownloadRequest(InputModel):
    format: DownloadFormat = DownloadFormat.PEM
    include_chain: bool = Field(default=True, description="PEM only: append the issuing certificates")
    password: SecretStr | None = Field(default=None, description="PKCS#12 only: protects the file, 8+ characters")


class DownloadResult(BaseModel):
    """A file to hand to the user. Its content is never logged or shown in a repr."""

    model_config = ConfigDict(frozen=True)

    filename: str
    media_type: str
    content: bytes = Field(repr=False)


# --- Details and View ---------------------------------------------------------------------------------------


class ChainEntry(BaseModel):
    subject: str
    issuer: str
    serial_number: str
    not_after: datetime
    sha256_thumbprint: str
    is_ca: bool


class LocationView(BaseModel):
    id: int
    kind: str
    where: str  # host:port (SNI), server:path, or the uploaded file name
    host: str | None
    port: int | None
    scan_ip: str | None
    scan_port: int | None
    sni: str | None
    server_id: int | None
    path: str | None
    discovery_bot: str | None
    first_seen: datetime
    last_seen: datetime
    last_checked_at: datetime
    status: LocationStatus
    last_error: str | None


class CertificateDetails(BaseModel):
    """Certificate Details: the decoded leaf, its chain, where it was found, and the inventory's verdicts."""

    id: int
    status: CertificateStatus
    status_reason: str | None
    ca_type: CAType | None
    trust_anchor: str | None
    issuer_ca: str | None
    expires_within_days: int
    vulnerable: bool
    vulnerability_reasons: list[str]
    usage: str  # tls-server, tls-client, smime, code-signing, ca, other (certfleet.pki.usage)
    usage_label: str  # "S/MIME"
    policy: list[RuleOutcome]  # every rule with its outcome: "398-day limit: not applicable, private CA (...)"
    has_private_key: bool
    discovery_bot: str | None
    provisioning_bot: str | None
    certificate: CertificateInfo
    chain: list[ChainEntry]
    locations: list[LocationView]


class CertificateText(BaseModel):
    """View Certificate: the decoded X.509 as text (what `openssl x509 -text` shows)."""

    certificate_id: int
    text: str


# --- Ignore / Delete ----------------------------------------------------------------------------------------


class StatusChange(BaseModel):
    certificate_id: int
    status: CertificateStatus
    status_reason: str | None


class Deleted(BaseModel):
    certificate_id: int
    common_name: str
    locations: int


# --- Import -------------------------------------------------------------------------------------------------


class UploadedFile(BaseModel):
    """One uploaded file: PEM, DER, PKCS#7, PKCS#12 or a Java keystore (JKS, JCEKS) with its password."""

    filename: str = Field(min_length=1, max_length=255)
    content: bytes = Field(repr=False)
    password: SecretStr | None = None  # PKCS#12 password, or the Java keystore's store password
    key_password: SecretStr | None = None  # Java keystores only: the key entries' password when not the store's

    @field_validator("filename")
    @classmethod
    def _basename(cls, value: str) -> str:
        return value.replace("\\", "/").rsplit("/", 1)[-1] or "upload"


class ImportOutcome(BaseModel):
    filename: str
    entry: str | None = None  # the keystore alias, for Java keystores (one outcome per entry)
    imported: bool
    certificate_id: int | None = None
    common_name: str | None = None
    new: bool = False  # False: the inventory held it already, this file added a place
    private_key_stored: bool = False
    reason: str | None = None  # why the file was not imported, or a note about what was left out


class ImportReport(BaseModel):
    outcomes: list[ImportOutcome]

    @property
    def imported(self) -> int:
        return sum(1 for o in self.outcomes if o.imported)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.imported)

    @property
    def http_status(self) -> int:
        """200 when every file (or keystore entry) was imported, 422 when none was, 207 for a mix."""
        if not self.failed:
            return 200
        return 422 if not self.imported else 207


# --- Private roots ------------------------------------------------------------------------------------------


class PrivateRootView(BaseModel):
    id: int
    name: str
    subject: str
    sha256_thumbprint: str
    not_after: datetime
    apply_public_rules: bool  # chains to this root are held to the public CA rules (398-day limit)
    created_at: datetime
    created_by: str | None

"""The create/edit form of each CA connector kind: exactly the manual's fields, validated with clear messages.

Field titles are the manual's labels (the dashboard renders them from `model_json_schema()`); secret fields
are `SecretStr`/bytes and listed in `secret_fields`: on create they are required, on edit `None` keeps the
stored value. `advanced` holds what the manual does not list but a real installation needs (the TLS CA
bundle of a private CA's endpoint, timeout, rate limit); every part of it is optional.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from certfleet import fields
from certfleet.connectors.ca.emca import SUPPORTED_VERSIONS, dialect_for
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.input_model import InputModel, TaggedInputModel


class ConnectorKind(enum.StrEnum):
    EMSIGN = "emsign"
    EMCA = "emca"
    ADCS = "adcs"
    DIGICERT = "digicert"
    ACME = "acme"


KIND_LABELS: dict[str, str] = {
    "emsign": "emSign",
    "emca": "emCA",
    "adcs": "AD CS",
    "digicert": "DigiCert",
    "acme": "ACME",
    "local": "Built-in CA",
}

# The list page columns of the manual, per kind (Actions: Edit, Disable, Delete).
LIST_COLUMNS: dict[str, list[str]] = {
    "emsign": ["Name", "Base URL", "Status", "Actions"],
    "emca": ["Name", "Base URL", "Status", "Actions"],
    "adcs": ["Name", "Base URL", "Status", "Actions"],
    "digicert": ["Name", "Base URL", "Status", "Certificate Validity", "Actions"],
    "acme": ["Name", "Base URL", "Status", "Actions"],
}

# Requests per second and burst a connector allows by default (DigiCert: 100 requests / 5 s documented;
# emSign's sandbox about 16 orders / 10 s); half the documented limits, so retries still fit.
DEFAULT_RATE: dict[str, tuple[float, int]] = {
    "digicert": (10.0, 20),
    "emsign": (2.0, 5),
    "emca": (20.0, 20),
    "adcs": (20.0, 20),
    "acme": (20.0, 40),
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def https_url(value: str, what: str) -> str:
    # urlsplit drops whitespace around a URL and tabs or line breaks inside it without a word: refused here, so
    # the URL stored is the one that is called
    problem = fields.edge_space_problem(value) or next(
        (f"contains a control character (U+{ord(c):04X})" for c in value if unicodedata.category(c) == "Cc"), None
    )
    if problem is not None:
        raise ValueError(f"{what} {problem}: give the URL exactly")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{what} must be an https:// URL (for example https://ca.example.com/...), not {value!r}")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):  # fullmatch: "$" alone would let a final newline through
        raise ValueError(f"{value!r} is not an email address")
    return value


class AdvancedOptions(InputModel):
    """Beyond the manual's fields; all optional."""

    model_config = ConfigDict(extra="forbid")

    tls_ca_bundle: str | None = Field(
        default=None,
        title="TLS CA bundle (PEM)",
        description="CA certificates that issued the CA endpoint's HTTPS certificate; empty = system trust store",
    )
    timeout_s: float = Field(default=30.0, ge=1, le=300, title="Timeout (seconds)")
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, le=1000, title="Requests per second", description="Empty = the kind's default"
    )
    rate_limit_burst: int | None = Field(default=None, ge=1, le=10000, title="Burst")

    @field_validator("tls_ca_bundle")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("the TLS CA bundle must be PEM certificates (-----BEGIN CERTIFICATE-----)")
        return value.strip() + "\n"


RENEWAL_FIELDS = ("renew_before_days", "renew_before_fraction")


class ConnectorFormBase(TaggedInputModel):
    model_config = ConfigDict(extra="forbid")

    secret_fields: ClassVar[tuple[str, ...]] = ()
    url_field: ClassVar[str] = "base_url"

    def secret_destinations(self) -> dict[str, tuple[str, ...]]:
        """For each secret, the settings saying where it is sent: change one and the secret must be given
        again (a stored key never follows an edit to another endpoint)."""
        return {name: (self.url_field,) for name in self.secret_fields}

    name: str = Field(min_length=1, max_length=120, title="Name")
    advanced: AdvancedOptions = Field(default_factory=AdvancedOptions)
    # Renewal policy defaults for this connector's certificates (stored in their own columns, not settings).
    renew_before_days: int | None = Field(
        default=None,
        ge=1,
        le=365,
        title="Renew before expiry (days)",
        description="default for new certificates of this connector; empty: 30",
    )
    renew_before_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        allow_inf_nan=False,
        title="Renew when less than this share of the lifetime is left",
        description="between 0 and 1 (e.g. 0.25), for certificates that set none; empty: one third",
    )

    @field_validator("*")
    @classmethod
    def _as_sent(cls, value: Any) -> Any:
        """A name, URL, e-mail or secret is stored exactly as sent or refused: whitespace around it is a paste
        error to be told about (naming the field), never trimmed away."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str):
            fields.refuse_edge_space(text)
        return value

    def url(self) -> str:
        return str(getattr(self, self.url_field))

    def public_values(self) -> dict[str, Any]:
        """What goes into the connector's settings column (no secrets, no name)."""
        data = self.model_dump(mode="json", exclude={"kind", "name", *RENEWAL_FIELDS, *self.secret_fields})
        return data

    def secret_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.secret_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
            elif isinstance(value, bytes):
                import base64

                out[name] = base64.b64encode(value).decode()
            elif value is not None:
                out[name] = value
        return out


class EmSignForm(ConnectorFormBase):
    kind: Literal["emsign"] = "emsign"
    secret_fields: ClassVar[tuple[str, ...]] = ("access_key",)
    url_field: ClassVar[str] = "api_base_url"

    api_base_url: str = Field(title="emSign API Base URL")
    account_number: str = Field(title="emSign Account Number")
    access_key: SecretStr | None = Field(default=None, title="emSign AccessKey")
    full_name: str = Field(min_length=1, max_length=200, title="Full Name")
    email: str = Field(title="Email")
    product_code: str = Field(default="838", title="Product code", description="CERTInext product (advanced)")
    smime_product_code: str = Field(
        default="894", title="S/MIME product code", description="CERTInext product for S/MIME rollouts (advanced)"
    )

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return https_url(v, "the emSign API Base URL")

    @field_validator("account_number")
    @classmethod
    def _account(cls, v: str) -> str:
        if not v.isdigit():
            raise ValueError("the emSign Account Number is the digits shown in the emSign portal")
        return v

    @field_validator("email")
    @classmethod
    def _mail(cls, v: str) -> str:
        return _email(v)


class EmCAForm(ConnectorFormBase):
    kind: Literal["emca"] = "emca"
    secret_fields: ClassVar[tuple[str, ...]] = ("password", "uploaded_file")

    version: str = Field(
        title="emCA Version",
        description=f"Supported: emCA {SUPPORTED_VERSIONS}. Older versions (4.2.x and before) are not supported.",
    )
    base_url: str = Field(title="Base URL", description="e.g. https://emca.example.com/emCAServices/rest")
    username: str = Field(min_length=1, title="Username")
    issuing_ca: str = Field(min_length=1, title="Issuing CA")
    subscriber_id: str = Field(min_length=1, title="Subscriber ID")
    password: SecretStr | None = Field(default=None, title="Password")
    uploaded_file: bytes | None = Field(
        default=None,
        title="Upload File",
        description="The client certificate eMudhra issued for API access: PKCS#12 (.p12/.pfx) or PEM with key",
    )
    uploaded_file_name: str | None = Field(default=None, title="Uploaded file name")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            dialect_for(v)
        except PermanentConnectorError as exc:
            raise ValueError(str(exc)) from exc
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return https_url(v, "the emCA Base URL")


class ADCSForm(ConnectorFormBase):
    kind: Literal["adcs"] = "adcs"
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    base_url: str = Field(
        title="Base URL", description="The web enrollment endpoint, e.g. https://ca.corp.example/certsrv"
    )
    ca_setup_type: Literal["Standalone CA", "Enterprise CA"] = Field(title="CA Setup Type")
    username: str | None = Field(default=None, title="Username", description="DOMAIN\\user or user@domain")
    password: SecretStr | None = Field(default=None, title="Password")
    template: str | None = Field(
        default=None, title="Template", description="Certificate template name (Enterprise CA), e.g. WebServer"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return https_url(v, "the AD CS Base URL").rstrip("/")

    @model_validator(mode="after")
    def _enterprise(self) -> ADCSForm:
        if self.ca_setup_type == "Enterprise CA":
            if not self.username:
                raise ValueError("an Enterprise CA needs the Username of a domain service account")
            if not self.template:
                raise ValueError("an Enterprise CA issues from a certificate template: set the Template")
        return self


class DigiCertForm(ConnectorFormBase):
    kind: Literal["digicert"] = "digicert"
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    url_field: ClassVar[str] = "api_base_url"

    api_base_url: str = Field(default="https://www.digicert.com/services/v2", title="DigiCert API Base URL")
    api_key: SecretStr | None = Field(default=None, title="DigiCert API Key")
    server_platform_id: int | None = Field(default=None, title="Server Platform ID")
    organization_id: int = Field(gt=0, title="Organization ID")
    container_id: int | None = Field(default=None, gt=0, title="Container ID")
    certificate_validity: int = Field(
        default=397,
        ge=1,
        le=397,
        title="Certificate Validity",
        description="Days (DigiCert allows at most 397 for TLS)",
    )
    payment_type: Literal["Balance", "Profile"] = Field(default="Balance", title="Payment Type")
    product_name_id: str = Field(default="ssl_basic", title="Product", description="CertCentral product (advanced)")
    smime_product_name_id: Literal["secure_email_mailbox", "secure_email_sponsor", "secure_email_organization"] = Field(
        default="secure_email_mailbox",
        title="S/MIME product",
        description="CertCentral Secure Email product for S/MIME rollouts (advanced)",
    )

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return https_url(v, "the DigiCert API Base URL").rstrip("/")


class AcmeForm(ConnectorFormBase):
    kind: Literal["acme"] = "acme"
    secret_fields: ClassVar[tuple[str, ...]] = ("eab_hmac_key", "tsig_secret")
    url_field: ClassVar[str] = "directory_url"

    directory_url: str = Field(title="Directory URL", description="e.g. https://acme-v02.api.letsencrypt.org/directory")
    contact_email: str | None = Field(default=None, title="Contact Email")
    eab_key_id: str | None = Field(default=None, title="EAB Key ID", description="External account binding (optional)")
    eab_hmac_key: SecretStr | None = Field(default=None, title="EAB HMAC Key")
    challenge_type: Literal["http-01", "dns-01"] = Field(default="http-01", title="Challenge Type")
    # http-01: answered by the bot's own responder, or through the target server's web root.
    http01_mode: Literal["bot", "webroot"] = Field(default="bot", title="http-01 answered by")
    http01_listen: str = Field(default="0.0.0.0:80", title="Bot responder address (host:port)")
    http01_webroot: str | None = Field(default=None, title="Web root on the target server")
    # dns-01: RFC 2136 dynamic updates.
    dns_server: str | None = Field(default=None, title="DNS server (RFC 2136)")
    dns_port: int = Field(default=53, ge=1, le=65535, title="DNS port")
    dns_zone: str | None = Field(default=None, title="DNS zone", description="Empty = found by SOA lookup")
    tsig_key_name: str | None = Field(default=None, title="TSIG key name")
    tsig_algorithm: str = Field(default="hmac-sha256", title="TSIG algorithm")
    tsig_secret: SecretStr | None = Field(default=None, title="TSIG secret (base64)")

    def secret_destinations(self) -> dict[str, tuple[str, ...]]:
        # The EAB key is shown to the ACME server; the TSIG secret signs updates sent to the DNS server.
        return {"eab_hmac_key": ("directory_url",), "tsig_secret": ("dns_server", "dns_port")}

    @field_validator("directory_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return https_url(v, "the ACME Directory URL")

    @field_validator("contact_email")
    @classmethod
    def _mail(cls, v: str | None) -> str | None:
        return _email(v) if v else None

    @field_validator("http01_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"the responder address must be host:port, e.g. 0.0.0.0:80, not {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AcmeForm:
        webroot_ok = bool(self.http01_webroot and self.http01_webroot.startswith("/"))
        if self.challenge_type == "http-01" and self.http01_mode == "webroot" and not webroot_ok:
            raise ValueError("http-01 through a web root needs the web root's absolute path, e.g. /var/www/html")
        if self.challenge_type == "dns-01":
            if not self.dns_server:
                raise ValueError("dns-01 needs the DNS server that accepts RFC 2136 updates")
            if self.tsig_secret is not None and not self.tsig_key_name:
                raise ValueError("a TSIG secret needs its key name")
        if self.eab_hmac_key is not None and not self.eab_key_id:
            raise ValueError("an EAB HMAC key needs its EAB Key ID")
        return self


ConnectorForm = Annotated[EmSignForm | EmCAForm | ADCSForm | DigiCertForm | AcmeForm, Field(discriminator="kind")]

FORMS: dict[str, type[ConnectorFormBase]] = {
    "emsign": EmSignForm,
    "emca": EmCAForm,
    "adcs": ADCSForm,
    "digicert": DigiCertForm,
    "acme": AcmeForm,
}

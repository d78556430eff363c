"""From a stored connector row to a live CA connector (used by `build_ca` and by test-connection).

`StoredConnector` is a plain snapshot of the row (credentials decrypted in memory only), so connectors
are built and used without holding a database session. `RuntimeHooks` are what the caller plugs in:
the order journal, the throttle (a Prefect rate limit inside flows), the ACME account store, and the
transports of an order's targets (http-01 through a web root).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from certfleet.connectors.base import CertificateAuthority
from certfleet.connectors.ca.acme import AccountStore, AcmeAccount, AcmeCA, AcmeSettings, MemoryAccountStore
from certfleet.connectors.ca.acme_challenges import (
    BotHttp01Solver,
    ChallengeSolver,
    Rfc2136Dns01Solver,
    WebrootHttp01Solver,
)
from certfleet.connectors.ca.adcs import ADCSCA, ADCSSettings
from certfleet.connectors.ca.digicert import DigiCertCA, DigiCertSettings
from certfleet.connectors.ca.digicert import error_message as digicert_message
from certfleet.connectors.ca.emca import ClientIdentity, EmCACA, EmCASettings
from certfleet.connectors.ca.emca import error_message as emca_message
from certfleet.connectors.ca.emsign import EmSignCA, EmSignSettings
from certfleet.connectors.ca.http import CAHttp, make_client
from certfleet.connectors.ca.journal import OrderJournal
from certfleet.connectors.ca.windows_auth import WindowsAuth
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers.transport import Transport
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector

REMOTE_KINDS = ("emsign", "emca", "adcs", "digicert", "acme")
ACME_KEY = "acme_account_key_pem"
ACME_URI = "acme_account_uri"


class RemoteCA(CertificateAuthority, Protocol):
    def check_credentials(self) -> str: ...


@dataclass(frozen=True)
class StoredConnector:
    id: int | None
    kind: str
    name: str
    base_url: str
    settings: dict[str, Any]
    credentials: dict[str, Any] = field(repr=False)
    default_validity_days: int = 90

    @classmethod
    def of(cls, row: CAConnector) -> StoredConnector:
        return cls(
            id=row.id,
            kind=row.kind,
            name=row.name,
            base_url=row.base_url or "",
            settings=dict(row.settings or {}),
            credentials=dict(json.loads(row.credentials)) if row.credentials else {},
            default_validity_days=row.default_validity_days,
        )

    @property
    def advanced(self) -> dict[str, Any]:
        return dict(self.settings.get("advanced") or {})

    def secret(self, name: str) -> str:
        value = self.credentials.get(name)
        if not value:
            raise PermanentConnectorError(f"CA connector {self.name!r} has no stored {name.replace('_', ' ')}; edit it")
        return str(value)


@dataclass
class RuntimeHooks:
    journal: OrderJournal | None = None
    throttle: Callable[[], None] | None = None
    acme_accounts: AccountStore | None = None
    transports_for: Callable[[str], Sequence[Transport]] = lambda key: []


class DbAcmeAccountStore:
    """The connector's ACME account: key encrypted in `credentials`, URL in `settings`; saved at once."""

    def __init__(self, connector_id: int) -> None:
        self.connector_id = connector_id

    def load(self) -> AcmeAccount | None:
        with session_scope() as s:
            row = s.get(CAConnector, self.connector_id)
            if row is None:
                return None
            stored = StoredConnector.of(row)
        key, uri = stored.credentials.get(ACME_KEY), stored.settings.get(ACME_URI)
        return AcmeAccount(str(key), str(uri)) if key and uri else None

    def save(self, account: AcmeAccount) -> None:
        with session_scope() as s:
            row = s.get(CAConnector, self.connector_id)
            if row is None:
                return
            credentials = dict(json.loads(row.credentials)) if row.credentials else {}
            row.credentials = json.dumps({**credentials, ACME_KEY: account.key_pem})
            row.settings = {**(row.settings or {}), ACME_URI: account.uri}


def build_remote_ca(stored: StoredConnector, hooks: RuntimeHooks | None = None) -> RemoteCA:
    hooks = hooks or RuntimeHooks()
    builder = _BUILDERS.get(stored.kind)
    if builder is None:
        raise PermanentConnectorError(f"CA connector kind {stored.kind!r} is not supported by this version")
    return builder(stored, hooks)


def _http(
    stored: StoredConnector,
    hooks: RuntimeHooks,
    ca_name: str,
    *,
    headers: dict[str, str] | None = None,
    auth: Any = None,
    single_connection: bool = False,
    message_of: Callable[[Any], str | None] | None = None,
) -> CAHttp:
    advanced = stored.advanced
    client = make_client(
        stored.base_url,
        ca_bundle_pem=advanced.get("tls_ca_bundle"),
        timeout_s=float(advanced.get("timeout_s") or 30.0),
        headers=headers,
        auth=auth,
        single_connection=single_connection,
    )
    return CAHttp(client, ca_name, throttle=hooks.throttle, message_of=message_of)


def _digicert(stored: StoredConnector, hooks: RuntimeHooks) -> RemoteCA:
    s = stored.settings
    http = _http(
        stored, hooks, "DigiCert", headers={"X-DC-DEVKEY": stored.secret("api_key")}, message_of=digicert_message
    )
    settings = DigiCertSettings(
        organization_id=int(s["organization_id"]),
        validity_days=int(s.get("certificate_validity") or stored.default_validity_days),
        payment_method=str(s.get("payment_type") or "Balance").lower(),
        server_platform_id=s.get("server_platform_id"),
        container_id=s.get("container_id"),
        product_name_id=str(s.get("product_name_id") or "ssl_basic"),
        smime_product_name_id=str(s.get("smime_product_name_id") or "secure_email_mailbox"),
    )
    return DigiCertCA(http, settings, hooks.journal)


def _adcs(stored: StoredConnector, hooks: RuntimeHooks) -> RemoteCA:
    s = stored.settings
    username = s.get("username")
    auth = WindowsAuth(str(username), stored.secret("password")) if username else None
    http = _http(stored, hooks, "AD CS", auth=auth, single_connection=True)
    enterprise = s.get("ca_setup_type") == "Enterprise CA"
    settings = ADCSSettings(setup="enterprise" if enterprise else "standalone", template=s.get("template"))
    return ADCSCA(http, settings, hooks.journal)


def _emsign(stored: StoredConnector, hooks: RuntimeHooks) -> RemoteCA:
    s = stored.settings
    settings = EmSignSettings(
        account_number=str(s["account_number"]),
        full_name=str(s["full_name"]),
        email=str(s["email"]),
        product_code=str(s.get("product_code") or "838"),
        smime_product_code=str(s.get("smime_product_code") or "894"),
    )
    return EmSignCA(_http(stored, hooks, "emSign"), settings, stored.secret("access_key"), hooks.journal)


def _emca(stored: StoredConnector, hooks: RuntimeHooks) -> RemoteCA:
    s = stored.settings
    password = stored.secret("password")
    identity = ClientIdentity.load(base64.b64decode(stored.secret("uploaded_file")), password)
    settings = EmCASettings(
        version=str(s["version"]),
        username=str(s["username"]),
        issuing_ca=str(s["issuing_ca"]),
        subscriber_id=str(s["subscriber_id"]),
        validity_days=stored.default_validity_days,
    )
    return EmCACA(_http(stored, hooks, "emCA", message_of=emca_message), settings, password, identity, hooks.journal)


def acme_solver(stored: StoredConnector, hooks: RuntimeHooks) -> ChallengeSolver:
    s = stored.settings
    if s.get("challenge_type") == "dns-01":
        return Rfc2136Dns01Solver(
            str(s["dns_server"]),
            int(s.get("dns_port") or 53),
            tsig_key_name=s.get("tsig_key_name"),
            tsig_secret=stored.credentials.get("tsig_secret"),
            tsig_algorithm=str(s.get("tsig_algorithm") or "hmac-sha256"),
            zone=s.get("dns_zone"),
        )
    if s.get("http01_mode") == "webroot":
        return WebrootHttp01Solver(str(s["http01_webroot"]), hooks.transports_for)
    host, _, port = str(s.get("http01_listen") or "0.0.0.0:80").rpartition(":")
    return BotHttp01Solver(host.strip("[]"), int(port))


def _acme(stored: StoredConnector, hooks: RuntimeHooks) -> RemoteCA:
    s = stored.settings
    advanced = stored.advanced
    settings = AcmeSettings(
        directory_url=stored.base_url,
        contact_email=s.get("contact_email"),
        eab_kid=s.get("eab_key_id"),
        eab_hmac_key=stored.credentials.get("eab_hmac_key"),
        timeout_s=float(advanced.get("timeout_s") or 30.0),
    )
    accounts = hooks.acme_accounts
    if accounts is None:
        accounts = DbAcmeAccountStore(stored.id) if stored.id is not None else MemoryAccountStore()
    return AcmeCA(
        settings,
        acme_solver(stored, hooks),
        accounts,
        hooks.journal,
        ca_bundle_pem=advanced.get("tls_ca_bundle"),
        throttle=hooks.throttle,
        lock_name=f"ca-connector-{stored.id}" if stored.id is not None else None,
    )


_BUILDERS: dict[str, Callable[[StoredConnector, RuntimeHooks], RemoteCA]] = {
    "digicert": _digicert,
    "adcs": _adcs,
    "emsign": _emsign,
    "emca": _emca,
    "acme": _acme,
}

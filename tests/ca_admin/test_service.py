"""CA connector management: the manual's fields and columns, validation messages, secrets kept secret,
disable, delete refused while certificates depend on it, and test-connection against the emulators."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from certfleet.ca_admin import service
from certfleet.ca_admin.forms import (
    FORMS,
    AcmeForm,
    ADCSForm,
    AdvancedOptions,
    DigiCertForm,
    EmCAForm,
    EmSignForm,
)
from certfleet.models import repo
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    AuditEvent,
    CAConnector,
    Certificate,
    ConnectorStatus,
    DirectoryProfile,
    Order,
    SmimeOrder,
    SmimeUser,
    utcnow,
)
from tests.emulators.adcs import ADCSEmulator
from tests.emulators.digicert import DigiCertEmulator
from tests.emulators.emca import EmCAEmulator
from tests.emulators.emsign import EmSignEmulator
from tests.emulators.fixtures import EAB_KID, EMCA_PFX_PASSWORD, AcmeStack
from tests.emulators.pki import TlsIdentity

DIGICERT_KEY = "dc-secret-api-key-that-must-not-leak"


@pytest.fixture
def boot(database: str) -> Bootstrapped:
    return initialize()


def _digicert_form(**overrides: Any) -> DigiCertForm:
    values: dict[str, Any] = {
        "name": "DigiCert production",
        "api_base_url": "https://www.digicert.com/services/v2",
        "api_key": SecretStr(DIGICERT_KEY),
        "server_platform_id": 45,
        "organization_id": 123456,
        "container_id": 334455,
        "certificate_validity": 365,
        "payment_type": "Profile",
    }
    return DigiCertForm(**{**values, **overrides})


def _create(form: Any) -> int:
    with session_scope() as s:
        return service.create_connector(s, form, actor="alice")


# -- the manual's fields and columns ---------------------------------------------------------------------


def test_forms_have_exactly_the_manuals_fields() -> None:
    def titles(kind: str) -> set[str]:
        fields = FORMS[kind].model_fields
        return {f.title or n for n, f in fields.items() if n not in ("kind", "advanced")}

    assert {
        "Name",
        "emSign API Base URL",
        "emSign Account Number",
        "emSign AccessKey",
        "Full Name",
        "Email",
    } <= titles("emsign")
    assert {
        "emCA Version",
        "Name",
        "Base URL",
        "Username",
        "Issuing CA",
        "Subscriber ID",
        "Password",
        "Upload File",
    } <= titles("emca")
    assert {"Name", "Base URL", "CA Setup Type", "Username", "Password", "Template"} <= titles("adcs")
    assert {
        "Name",
        "DigiCert API Base URL",
        "DigiCert API Key",
        "Server Platform ID",
        "Organization ID",
        "Container ID",
        "Certificate Validity",
        "Payment Type",
    } <= titles("digicert")
    assert {"Name", "Directory URL", "Contact Email", "EAB Key ID", "EAB HMAC Key", "Challenge Type"} <= titles("acme")
    schema = service.form_schema("adcs")
    assert schema["properties"]["ca_setup_type"]["enum"] == ["Standalone CA", "Enterprise CA"]
    assert service.form_schema("digicert")["properties"]["payment_type"]["enum"] == ["Balance", "Profile"]


def test_list_rows_have_the_manuals_columns(boot: Bootstrapped) -> None:
    digicert_id = _create(_digicert_form())
    emsign_id = _create(
        EmSignForm(
            name="emSign sandbox",
            api_base_url="https://sandbox-us-api.certinext.io/emSignHub-API/",
            account_number="1000012345",
            access_key=SecretStr("ak"),
            full_name="PKI Ops",
            email="pki@example.test",
        )
    )
    assert service.columns("digicert") == ["Name", "Base URL", "Status", "Certificate Validity", "Actions"]
    assert service.columns("emsign") == ["Name", "Base URL", "Status", "Actions"]
    with session_scope() as s:
        rows = {r.id: r for r in service.list_connectors(s)}
        only_digicert = service.list_connectors(s, "digicert")
    assert rows[digicert_id].model_dump() == {
        "id": digicert_id,
        "kind": "digicert",
        "kind_label": "DigiCert",
        "name": "DigiCert production",
        "base_url": "https://www.digicert.com/services/v2",
        "status": "Active",
        "certificate_validity": "365 days",
        "certificates": 0,
    }
    assert rows[emsign_id].certificate_validity is None
    assert rows[emsign_id].base_url == "https://sandbox-us-api.certinext.io/emSignHub-API/"
    assert rows[boot.ca_connector_id].kind_label == "Built-in CA"
    assert [r.id for r in only_digicert] == [digicert_id]


# -- secrets ---------------------------------------------------------------------------------------------


def test_credentials_are_encrypted_at_rest_and_never_returned(boot: Bootstrapped) -> None:
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        raw = s.execute(
            text("SELECT credentials, settings FROM ca_connectors WHERE id = :i"), {"i": connector_id}
        ).one()
        detail = service.get_connector(s, connector_id)
        form = service.edit_form(s, connector_id)
        audit = list(s.scalars(select(AuditEvent.detail)))
    assert DIGICERT_KEY not in str(raw.credentials)
    assert DIGICERT_KEY not in str(raw.settings)
    assert str(raw.credentials).startswith("gAAAA")  # a Fernet token
    assert DIGICERT_KEY not in detail.model_dump_json()
    assert detail.secrets_set == {"api_key": True}
    assert detail.values["organization_id"] == 123456
    assert form.api_key is None  # type: ignore[attr-defined]
    assert all(DIGICERT_KEY not in (d or "") for d in audit)


def test_edit_keeps_a_secret_left_empty_and_replaces_a_new_one(boot: Bootstrapped) -> None:
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        service.update_connector(
            s, connector_id, _digicert_form(api_key=None, certificate_validity=90, name="DigiCert EU"), actor="bob"
        )
    with session_scope() as s:
        row = repo.get(s, CAConnector, connector_id)
        assert json.loads(row.credentials or "{}")["api_key"] == DIGICERT_KEY
        assert (row.name, row.default_validity_days) == ("DigiCert EU", 90)
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "edit-ca-connector")).one()
        assert event.actor == "bob"
        assert "certificate_validity" in (event.detail or "")
        service.update_connector(s, connector_id, _digicert_form(api_key=SecretStr("new-key")), actor="bob")
    with session_scope() as s:
        assert json.loads(repo.get(s, CAConnector, connector_id).credentials or "{}")["api_key"] == "new-key"


# -- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "field", "message"),
    [
        (
            "digicert",
            {"name": "x", "api_base_url": "http://digicert.test", "organization_id": 1},
            "api_base_url",
            "must be an https:// URL",
        ),
        (
            "digicert",
            {"name": "x", "organization_id": 1, "certificate_validity": 500},
            "certificate_validity",
            "less than or equal to 397",
        ),
        (
            "emca",
            {
                "name": "x",
                "version": "4.2.6",
                "base_url": "https://emca.test/rest",
                "username": "u",
                "issuing_ca": "CA",
                "subscriber_id": "S",
            },
            "version",
            "supports emCA 4.3.1 and 5.x",
        ),
        (
            "adcs",
            {
                "name": "x",
                "base_url": "https://ca.test/certsrv",
                "ca_setup_type": "Enterprise CA",
                "username": "CORP\\svc",
            },
            None,
            "certificate template",
        ),
        (
            "emsign",
            {
                "name": "x",
                "api_base_url": "https://e.test/",
                "account_number": "12AB",
                "full_name": "F",
                "email": "a@b.test",
            },
            "account_number",
            "digits",
        ),
        (
            "emsign",
            {
                "name": "x",
                "api_base_url": "https://e.test/",
                "account_number": "12",
                "full_name": "F",
                "email": "not-an-email",
            },
            "email",
            "not an email address",
        ),
        (
            "acme",
            {"name": "x", "directory_url": "https://acme.test/dir", "challenge_type": "dns-01"},
            None,
            "DNS server",
        ),
        (
            "acme",
            {"name": "x", "directory_url": "https://acme.test/dir", "http01_mode": "webroot"},
            None,
            "absolute path",
        ),
        ("local", {"name": "x"}, "kind", "choose one of emSign, emCA, AD CS, DigiCert, ACME"),
    ],
)
def test_bad_input_gets_a_message_that_says_what_to_fix(
    kind: str, data: dict[str, Any], field: str | None, message: str
) -> None:
    with pytest.raises(service.ConnectorFormError, match=message) as caught:
        service.parse_form(kind, data)
    assert caught.value.field == field


def test_secrets_are_required_on_create_and_names_are_unique(boot: Bootstrapped) -> None:
    with session_scope() as s, pytest.raises(service.ConnectorFormError, match="DigiCert API Key is required"):
        service.create_connector(s, _digicert_form(api_key=None), actor="alice")
    _create(_digicert_form())
    with session_scope() as s, pytest.raises(service.ConnectorFormError, match="already exists") as caught:
        service.create_connector(s, _digicert_form(name="digicert PRODUCTION"), actor="alice")
    assert caught.value.field == "name"


def test_emca_file_must_hold_a_client_key(boot: Bootstrapped) -> None:
    form = EmCAForm(
        name="emCA",
        version="5.0.0",
        base_url="https://emca.test/emCAServices/rest",
        username="app",
        issuing_ca="CA",
        subscriber_id="S",
        password=SecretStr("pw"),
        uploaded_file=b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
    )
    with session_scope() as s, pytest.raises(service.ConnectorFormError, match="not a usable client certificate"):
        service.create_connector(s, form, actor="alice")


# -- disable and delete ----------------------------------------------------------------------------------


def test_disabled_connector_places_no_new_orders_but_keeps_its_certificates(boot: Bootstrapped) -> None:
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        s.add(Certificate(common_name="kept.example.test", ca_connector_id=connector_id))
        service.disable_connector(s, connector_id, actor="alice")
    with session_scope() as s:
        assert repo.get(s, CAConnector, connector_id).status is ConnectorStatus.DISABLED
        assert service.list_connectors(s, "digicert")[0].status == "Disabled"
        assert s.scalar(select(Certificate.ca_connector_id)) == connector_id
        with pytest.raises(repo.NotFound, match="is disabled: it places no new orders"):
            repo.active_connector(s, connector_id)
        service.enable_connector(s, connector_id, actor="alice")
        assert repo.active_connector(s, connector_id).id == connector_id


def test_delete_is_refused_while_certificates_depend_on_it_and_lists_them(boot: Bootstrapped) -> None:
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        using = Certificate(common_name="using.example.test", ca_connector_id=connector_id)
        moved = Certificate(common_name="moved.example.test", ca_connector_id=boot.ca_connector_id)
        s.add_all([using, moved])
        s.flush()
        s.add(Order(certificate_id=moved.id, ca_connector_id=connector_id, idempotency_key="k-moved", csr_pem="x"))
        s.add(DirectoryProfile(name="Contoso", tenant_id="t", client_id="c", ca_connector_id=connector_id))
    with session_scope() as s, pytest.raises(service.ConnectorInUse) as caught:
        service.delete_connector(s, connector_id, actor="alice")
    assert [c.common_name for c in caught.value.certificates] == ["using.example.test", "moved.example.test"]
    assert caught.value.profiles == ["Contoso"]
    assert "using.example.test" in caught.value.message
    assert "disable the connector instead" in caught.value.message
    with session_scope() as s:
        assert s.get(CAConnector, connector_id) is not None


def test_delete_is_refused_while_smime_users_hold_its_certificates(boot: Bootstrapped) -> None:
    """A renewal orders from the connector that issued the user's certificate: it must not vanish under them."""
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        user = SmimeUser(name="Mia", email="mia@example.com", source="Manual Import", created_at=utcnow())
        s.add(user)
        s.flush()
        s.add(SmimeOrder(user_id=user.id, ca_connector_id=connector_id, idempotency_key="smime-k", state="Failed"))
    with session_scope() as s, pytest.raises(service.ConnectorInUse) as caught:
        service.delete_connector(s, connector_id, actor="alice")
    assert "1 S/MIME user(s) with its certificates: mia@example.com" in caught.value.message
    with session_scope() as s:
        assert s.get(CAConnector, connector_id) is not None


def test_delete_removes_an_unused_connector_but_never_the_built_in_ca(boot: Bootstrapped) -> None:
    connector_id = _create(_digicert_form())
    with session_scope() as s:
        service.delete_connector(s, connector_id, actor="alice")
    with session_scope() as s:
        assert s.get(CAConnector, connector_id) is None
        assert s.scalars(select(AuditEvent.action)).all()[-1] == "delete-ca-connector"
        with pytest.raises(service.ConnectorFormError, match="built-in CA cannot be deleted"):
            service.delete_connector(s, boot.ca_connector_id, actor="alice")


# -- test connection -------------------------------------------------------------------------------------


def _emulator_forms(request: pytest.FixtureRequest, kind: str, tls: TlsIdentity) -> tuple[Any, Any]:
    """A form with good credentials and one with bad ones, for an emulator started for this test."""
    adv = AdvancedOptions(tls_ca_bundle=tls.ca_pem, timeout_s=5)
    if kind == "digicert":
        dc: DigiCertEmulator = request.getfixturevalue("digicert_emulator")
        good = DigiCertForm(
            name="dc",
            api_base_url=dc.base_url,
            api_key=SecretStr(dc.api_key),
            organization_id=dc.organization_id,
            advanced=adv,
        )
        return good, good.model_copy(update={"api_key": SecretStr("nope")})
    if kind == "adcs":
        adcs: ADCSEmulator = request.getfixturevalue("adcs_emulator")
        good = ADCSForm(
            name="adcs",
            base_url=adcs.base_url,
            ca_setup_type="Enterprise CA",
            username=adcs.login,
            password=SecretStr(adcs.password),
            template="WebServer",
            advanced=adv,
        )
        return good, good.model_copy(update={"password": SecretStr("nope")})
    if kind == "emsign":
        em: EmSignEmulator = request.getfixturevalue("emsign_emulator")
        good = EmSignForm(
            name="em",
            api_base_url=em.base_url,
            account_number=em.account_number,
            access_key=SecretStr(em.access_key),
            full_name="Ops",
            email="ops@example.test",
            advanced=adv,
        )
        return good, good.model_copy(update={"access_key": SecretStr("nope")})
    if kind == "emca":
        client_file, _ = request.getfixturevalue("emca_client_file")
        emca: EmCAEmulator = request.getfixturevalue("emca_emulator")
        good = EmCAForm(
            name="emca",
            version="5",
            base_url=emca.base_url,
            username=emca.username,
            issuing_ca=emca.issuing_ca,
            subscriber_id=emca.subscriber_id,
            password=SecretStr(EMCA_PFX_PASSWORD),
            uploaded_file=client_file,
            advanced=adv,
        )
        return good, good.model_copy(update={"issuing_ca": "No Such CA"})
    stack: AcmeStack = request.getfixturevalue("acme_http_stack")
    good = AcmeForm(
        name="acme",
        directory_url=stack.pebble.directory_url,
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(stack.eab_hmac),
        advanced=adv,
    )
    return good, good.model_copy(update={"eab_hmac_key": None, "eab_key_id": None})


@pytest.mark.parametrize("kind", ["digicert", "adcs", "emsign", "emca", "acme"])
def test_test_connection_authenticates_without_ordering(
    boot: Bootstrapped, request: pytest.FixtureRequest, emulator_tls: TlsIdentity, kind: str
) -> None:
    good, bad = _emulator_forms(request, kind, emulator_tls)
    connector_id = _create(good)
    with session_scope() as s:
        result = service.check_connection(s, connector_id)
    assert result.ok, result.message
    assert "authenticated" in result.message
    failed = service.check_form(bad)
    assert not failed.ok
    assert failed.message  # the CA's reason, for the form
    with session_scope() as s:
        assert s.scalar(select(Order.id)) is None  # nothing was ordered
        # Testing an edit: secrets left empty come from the stored connector.
        assert service.check_form(service.edit_form(s, connector_id), s, connector_id).ok


def test_acme_account_is_registered_once_and_kept_encrypted(
    boot: Bootstrapped, acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    form = AcmeForm(
        name="acme",
        directory_url=acme_http_stack.pebble.directory_url,
        contact_email="pki@example.test",
        eab_key_id=EAB_KID,
        eab_hmac_key=SecretStr(acme_http_stack.eab_hmac),
        advanced=AdvancedOptions(tls_ca_bundle=emulator_tls.ca_pem),
    )
    connector_id = _create(form)
    with session_scope() as s:
        first = service.check_connection(s, connector_id)
        second = service.check_connection(s, connector_id)
    assert first.ok
    assert second.ok
    with session_scope() as s:
        row = repo.get(s, CAConnector, connector_id)
        uri = row.settings["acme_account_uri"]
        assert first.message.endswith(uri)
        assert second.message.endswith(uri)
        assert "BEGIN PRIVATE KEY" in json.loads(row.credentials or "{}")["acme_account_key_pem"]
        assert "acme_account" not in service.get_connector(s, connector_id).model_dump_json()
        # Editing the name keeps the account; pointing at another directory would start a new one.
        service.update_connector(
            s, connector_id, form.model_copy(update={"name": "acme 2", "eab_hmac_key": None}), actor="a"
        )
        assert repo.get(s, CAConnector, connector_id).settings["acme_account_uri"] == uri


def test_uploaded_emca_file_is_stored_encrypted(boot: Bootstrapped, emca_client_file: tuple[bytes, object]) -> None:
    form = EmCAForm(
        name="emCA",
        version="4.3.1",
        base_url="https://emca.test/emCAServices431/rest",
        username="app",
        issuing_ca="CA",
        subscriber_id="S",
        password=SecretStr(EMCA_PFX_PASSWORD),
        uploaded_file=emca_client_file[0],
        uploaded_file_name="client.p12",
    )
    connector_id = _create(form)
    with session_scope() as s:
        row = repo.get(s, CAConnector, connector_id)
        assert base64.b64decode(json.loads(row.credentials or "{}")["uploaded_file"]) == emca_client_file[0]
        detail = service.get_connector(s, connector_id)
    assert detail.values["uploaded_file_name"] == "client.p12"
    assert detail.secrets_set == {"password": True, "uploaded_file": True}
    assert "uploaded_file" not in detail.values


def test_a_stored_key_is_never_sent_to_a_changed_url(boot: Bootstrapped) -> None:
    """Saving or testing an edit that moves the API Base URL needs the API key again: the stored one stays
    with the URL it was given for (here nothing even connects to the new address)."""
    import socket

    connector_id = _create(_digicert_form())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        moved = _digicert_form(api_base_url=f"https://127.0.0.1:{listener.getsockname()[1]}/services/v2", api_key=None)
        with session_scope() as s:
            tested = service.check_form(moved, s, connector_id)
            assert (tested.ok, tested.message) == (
                False, "give the DigiCert API Key again: the DigiCert API Base URL changed"
            )  # fmt: skip
            with pytest.raises(service.ConnectorFormError) as caught:
                service.update_connector(s, connector_id, moved, actor="alice")
            assert caught.value.field == "api_key"
        with pytest.raises(TimeoutError):
            listener.accept()  # no connection was made to the new URL
    with session_scope() as s:
        assert service.get_connector(s, connector_id).base_url == "https://www.digicert.com/services/v2"
        service.update_connector(s, connector_id, moved.model_copy(update={"api_key": SecretStr("new-key")}), actor="a")
        assert service.get_connector(s, connector_id).base_url.startswith("https://127.0.0.1:")


def test_a_tsig_secret_stays_with_its_dns_server(boot: Bootstrapped) -> None:
    """dns-01 signs its updates with the TSIG secret: a new DNS server (or port) needs the secret again."""
    values: dict[str, Any] = {
        "name": "ACME dns-01",
        "directory_url": "https://acme.test/dir",
        "challenge_type": "dns-01",
        "dns_server": "192.0.2.53",
        "tsig_key_name": "certfleet.",
        "tsig_secret": SecretStr("c2VjcmV0LXRzaWc="),
    }
    connector_id = _create(AcmeForm(**values))
    for change, what in (({"dns_server": "203.0.113.53"}, "DNS server (RFC 2136)"), ({"dns_port": 5353}, "DNS port")):
        moved = AcmeForm(**{**values, **change, "tsig_secret": None})
        with session_scope() as s, pytest.raises(service.ConnectorFormError) as caught:
            service.update_connector(s, connector_id, moved, actor="alice")
        assert (caught.value.field, caught.value.message) == (
            "tsig_secret", f"give the TSIG secret (base64) again: the {what} changed"
        )  # fmt: skip
    with session_scope() as s:  # other edits keep the stored secret
        service.update_connector(
            s, connector_id, AcmeForm(**{**values, "name": "ACME", "tsig_secret": None}), actor="a"
        )
        assert service.get_connector(s, connector_id).secrets_set["tsig_secret"]

"""The Graph directory client against the Entra ID + Graph emulator over HTTPS, through the real msal."""

from __future__ import annotations

import pytest

from certfleet.connectors.directory.azure_ad import SELECT, AzureADDirectory, AzureADSettings
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from tests.emulators.azure_ad import AzureADEmulator, make_user
from tests.emulators.fixtures import *  # noqa: F403 - the emulator fixtures


def settings(emulator: AzureADEmulator, secret: str | None = None, *, bundle: bool = True) -> AzureADSettings:
    return AzureADSettings(
        tenant_id=emulator.tenant_id,
        client_id=emulator.client_id,
        client_secret=emulator.client_secret if secret is None else secret,
        authority_host=emulator.authority_host,
        graph_base=emulator.graph_base,
        ca_bundle_pem=emulator.tls.ca_pem if bundle else None,
    )


def test_reads_every_page_with_select_and_top_999(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(n) for n in range(2500)]
    with AzureADDirectory(settings(azure_ad_emulator)) as directory:
        users = list(directory.users())
    assert [u.mail for u in users] == [f"user{n}@contoso.example" for n in range(2500)]
    assert users[7].job_title == "Engineer"
    assert users[7].account_enabled
    pages = [q for _, status, q in azure_ad_emulator.graph_log]
    assert len(pages) == 3  # 999 + 999 + 502
    assert all(q["$select"] == [SELECT] and q["$top"] == ["999"] for q in pages)
    assert "$skiptoken" not in pages[0]
    assert "$skiptoken" in pages[1]
    assert "$skiptoken" in pages[2]
    assert azure_ad_emulator.token_requests == 1  # the token is reused from msal's cache


def test_rest_environment_ca_bundle_does_not_override_the_profile_bundle(
    azure_ad_emulator: AzureADEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    azure_ad_emulator.users = [make_user(1)]
    with AzureADDirectory(settings(azure_ad_emulator)) as directory:
        assert [u.display_name for u in directory.users()] == ["User 1"]


def test_untrusted_endpoint_is_a_permanent_error(azure_ad_emulator: AzureADEmulator) -> None:
    with (
        AzureADDirectory(settings(azure_ad_emulator, bundle=False)) as directory,
        pytest.raises(PermanentConnectorError, match="not trusted"),
    ):
        directory.token()


def test_bad_client_secret_is_refused_with_azures_reason(azure_ad_emulator: AzureADEmulator) -> None:
    with (
        AzureADDirectory(settings(azure_ad_emulator, "wrong-secret")) as directory,
        pytest.raises(PermanentConnectorError, match=r"invalid_client.*AADSTS7000215") as caught,
    ):
        list(directory.users())
    assert "wrong-secret" not in str(caught.value)
    assert azure_ad_emulator.bad_secret_attempts == 1
    assert azure_ad_emulator.graph_log == []


def test_unknown_tenant_is_refused(azure_ad_emulator: AzureADEmulator) -> None:
    s = settings(azure_ad_emulator)
    wrong = AzureADSettings(
        "99999999-2222-3333-4444-555555555555",
        s.client_id,
        s.client_secret,
        s.authority_host,
        s.graph_base,
        s.ca_bundle_pem,
    )
    with AzureADDirectory(wrong) as directory, pytest.raises(PermanentConnectorError):
        directory.token()


def test_429_and_503_are_retried_after_retry_after_including_fractional(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(n) for n in range(1500)]
    azure_ad_emulator.graph_faults = [(429, "0.35"), (503, "1"), (429, None)]
    waits: list[float] = []
    with AzureADDirectory(settings(azure_ad_emulator), sleep=waits.append) as directory:
        users = list(directory.users())
    assert len(users) == 1500
    assert waits == [0.35, 1.0, 1.0]  # fractional honoured, integer honoured, no header: backoff from 1 s
    statuses = [status for _, status, _ in azure_ad_emulator.graph_log]
    assert statuses == [429, 503, 429, 200, 200]


def test_retry_after_is_really_waited(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(1)]
    azure_ad_emulator.graph_faults = [(429, "0.4")]
    with AzureADDirectory(settings(azure_ad_emulator)) as directory:
        list(directory.users())
    (t429, s1, _), (t200, s2, _) = azure_ad_emulator.graph_log
    assert (s1, s2) == (429, 200)
    assert t200 - t429 >= 0.4


def test_throttling_that_never_ends_is_a_transient_error(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(1)]
    azure_ad_emulator.graph_faults = [(429, "0")] * 20
    with (
        AzureADDirectory(settings(azure_ad_emulator), sleep=lambda s: None, max_throttle_retries=3) as directory,
        pytest.raises(TransientConnectorError, match=r"429.*TooManyRequests"),
    ):
        list(directory.users())
    assert len(azure_ad_emulator.graph_log) == 4


def test_token_expiring_mid_sync_is_refreshed_and_the_page_fetched_again(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(n) for n in range(3000)]
    azure_ad_emulator.expire_token_after_pages = 2
    with AzureADDirectory(settings(azure_ad_emulator)) as directory:
        users = list(directory.users())
        assert directory.token_refreshes == 1
    assert len({u.user_principal_name for u in users}) == 3000
    assert azure_ad_emulator.expired_rejections == 1
    assert azure_ad_emulator.token_requests == 2
    assert [status for _, status, _ in azure_ad_emulator.graph_log] == [200, 200, 401, 200, 200]


def test_a_token_graph_keeps_refusing_is_a_permanent_error(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [make_user(1)]
    azure_ad_emulator.expire_token_after_pages = 0  # every token is refused
    with (
        AzureADDirectory(settings(azure_ad_emulator)) as directory,
        pytest.raises(PermanentConnectorError, match="InvalidAuthenticationToken"),
    ):
        list(directory.users())
    assert azure_ad_emulator.token_requests == 2  # one refresh, then it gives up


def test_users_without_mail_and_disabled_users_come_through_as_graph_says(azure_ad_emulator: AzureADEmulator) -> None:
    azure_ad_emulator.users = [
        make_user(1, mail=None, upn="alice@contoso.example"),
        make_user(2, enabled=False, job=None),
    ]
    with AzureADDirectory(settings(azure_ad_emulator)) as directory:
        alice, bob = directory.users()
    assert alice.mail is None
    assert alice.user_principal_name == "alice@contoso.example"
    assert not bob.account_enabled
    assert bob.job_title is None
    assert "client_secret=***" in repr(settings(azure_ad_emulator))

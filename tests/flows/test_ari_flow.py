"""ACME Renewal Information against Pebble: the installed Pebble (Debian 2.4.0) has no renewalInfo, so the
HTTPS proxy in front of it (tests/emulators/acme_env.AcmeFaultProxy) adds it to Pebble's directory and answers
`GET /renewal-info/<CertID>` as RFC 9773 describes; every ACME call (account, orders, finalize) is Pebble's."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from certfleet.connectors.ca import acme
from certfleet.dashboard.api.certificates import certificate_json
from certfleet.flows.issuance import issue_certificate
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate, utcnow
from certfleet.renewal import ari
from certfleet.renewal.schedule import renews_at
from certfleet.tasks.renewal import find_due
from certfleet.tasks.renewal_info import refresh_renewal_info
from tests.emulators.fixtures import AcmeStack
from tests.emulators.pki import TlsIdentity
from tests.flows.conftest import Site, use_acme_connector


def _iso(at: object) -> str:
    return at.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]


def _leaf_id(cert_id: int) -> tuple[str, str]:
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        assert cert.pem_chain is not None
        assert cert.serial_number is not None
        return ari.cert_id(x509.load_pem_x509_certificate(cert.pem_chain.encode())), cert.serial_number


def _cert(cert_id: int) -> Certificate:
    with session_scope() as s:
        cert = repo.get(s, Certificate, cert_id)
        s.expunge(cert)
        return cert


def _due(cert_id: int) -> object:
    with session_scope() as s:
        return renews_at(repo.get(s, Certificate, cert_id))


def _json(cert_id: int) -> dict[str, object]:
    with session_scope() as s:
        return certificate_json(repo.get(s, Certificate, cert_id))


def test_ari_window_retry_after_replaces_and_the_fallbacks(
    site: Site, acme_http_stack: AcmeStack, emulator_tls: TlsIdentity
) -> None:
    stack = acme_http_stack
    stack.reset()
    proxy = stack.proxy
    proxy.ari_answers = {}  # the CA offers renewalInfo (knows no certificate yet)
    use_acme_connector(site, stack, emulator_tls, "ACME with ARI", proxy.directory_url)
    issue_certificate(site.certificate_id)
    assert "replaces" not in proxy.order_payloads[-1]  # a first certificate replaces nothing
    first_id, first_serial = _leaf_id(site.certificate_id)
    window_rule = _due(site.certificate_id)

    # The CA suggests renewing in two to three days, with an explanation, and to ask again in two hours.
    now = utcnow()
    start, end = now + timedelta(days=2), now + timedelta(days=3)
    proxy.ari_answers = {
        first_id: {
            "suggestedWindow": {"start": _iso(start), "end": _iso(end)},
            "explanationURL": "https://ca.example.test/incidents/7",
        }
    }
    proxy.ari_retry_after = "7200"
    assert refresh_renewal_info.fn(now) == 1
    assert proxy.ari_asked == [first_id]
    cert = _cert(site.certificate_id)
    assert cert.ari_renew_at is not None
    assert start <= cert.ari_renew_at <= end
    chosen = cert.ari_renew_at
    assert cert.ari_explanation_url == "https://ca.example.test/incidents/7"
    assert cert.ari_next_poll_at == now + timedelta(hours=2)
    assert _due(site.certificate_id) == chosen != window_rule  # the due time is ARI's, not the window rule's
    shown = _json(site.certificate_id)
    assert shown["renewal_due_at"] == chosen.isoformat()
    assert shown["ari_explanation_url"] == "https://ca.example.test/incidents/7"
    # not renewed before the chosen time (only re-deployed: the test never deployed it)
    assert [d.action for d in find_due.fn(chosen - timedelta(minutes=1))] == ["deploy"]
    with session_scope() as s:
        assert repo.get(s, Certificate, site.certificate_id).renewal_attempts == 0

    # Retry-After is honoured: not asked again before it has passed; then asked, and the chosen time is kept.
    assert refresh_renewal_info.fn(now + timedelta(hours=1)) == 0
    assert refresh_renewal_info.fn(now + timedelta(hours=2, seconds=1)) == 1
    assert proxy.ari_asked == [first_id, first_id]
    assert _cert(site.certificate_id).ari_renew_at == chosen

    # The CA moves the window into the past (say, a mis-issuance incident): the certificate is due at once, and
    # the renewal order names the certificate it replaces.
    proxy.ari_answers[first_id]["suggestedWindow"] = {"start": _iso(now - timedelta(hours=2)), "end": _iso(now)}
    later = now + timedelta(hours=5)
    refresh_renewal_info.fn(later)
    assert _cert(site.certificate_id).ari_renew_at <= now  # type: ignore[operator]
    (due,) = find_due.fn(later)
    assert due.action == "provision"
    issue_certificate(site.certificate_id)  # what the provision run does first
    assert proxy.order_payloads[-1]["replaces"] == first_id  # and Pebble issued it
    second_id, second_serial = _leaf_id(site.certificate_id)
    assert second_serial != first_serial
    assert _json(site.certificate_id)["ari_renew_at"] is None  # the old answer is not about the new serial

    # A failing ARI endpoint: the window rule again, and the reason is kept.
    proxy.ari_answers[second_id] = {"suggestedWindow": {"start": _iso(start), "end": _iso(end)}}
    proxy.ari_status = 500
    refresh_renewal_info.fn(later)
    cert = _cert(site.certificate_id)
    assert cert.ari_renew_at is None
    assert "HTTP 500" in (cert.ari_error or "")
    assert cert.ari_next_poll_at == later + timedelta(hours=6)
    assert _due(site.certificate_id) not in (None, chosen)

    # A CA without renewalInfo: no ARI, no error, asked again a day later, and no `replaces` in its orders.
    proxy.reset_ari()
    acme._sessions.clear()  # a process keeps its directory for SESSION_TTL_S: the next session sees the new one
    refresh_renewal_info.fn(later + timedelta(hours=7))
    cert = _cert(site.certificate_id)
    assert (cert.ari_renew_at, cert.ari_error) == (None, None)
    assert cert.ari_next_poll_at == later + timedelta(hours=7, days=1)
    issue_certificate(site.certificate_id)
    assert "replaces" not in proxy.order_payloads[-1]

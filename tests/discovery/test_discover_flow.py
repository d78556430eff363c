"""discover-endpoints against real TLS listeners: every inventory column, one certificate with many places,
places that stop answering or change certificate are marked (never deleted), and bad input is refused."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from certfleet.demo.listener import free_port
from certfleet.discovery import scan_process
from certfleet.discovery.testbed import TlsFarm
from certfleet.flows import discovery as flows_discovery
from certfleet.flows.discovery import DiscoveryFailed, discover_endpoints
from certfleet.models.bootstrap import Bootstrapped
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Bot,
    BotPurpose,
    BotStatus,
    CAType,
    Certificate,
    CertificateLocation,
    CertificateStatus,
    DeploymentType,
    DiscoveryRun,
    LocationStatus,
    Server,
    ServerConnection,
)
from certfleet.tasks.discovery import DiscoveryError, DiscoverySummary
from tests.discovery.certs import NAMES, Served, expected_reasons
from tests.discovery.fixtures import VHOST, Farm

pytestmark = pytest.mark.usefixtures("prefect_harness")

KEYS = {"good": ("RSA", 2048), "expired": ("RSA", 2048), "self_signed": ("EC", 256), "sha1": ("RSA", 2048),
        "rsa1024": ("RSA", 1024)}  # fmt: skip
SIGNATURES = {"good": "SHA256RSA", "expired": "SHA256RSA", "self_signed": "SHA256ECDSA", "sha1": "SHA1RSA",
              "rsa1024": "SHA256RSA"}  # fmt: skip
KEY_SPECS = {
    "good": "rsa2048",
    "expired": "rsa2048",
    "self_signed": "ec-p256",
    "sha1": "rsa2048",
    "rsa1024": "rsa2048",
}  # fmt: skip  (RSA-1024 is renewed as the smallest key certfleet issues)


def discover(**parameters: object) -> DiscoverySummary:
    return asyncio.run(discover_endpoints(**parameters))  # type: ignore[arg-type]


def certificate(sha256: str) -> Certificate:
    with session_scope() as s:
        row = s.scalar(select(Certificate).where(Certificate.sha256_thumbprint == sha256))
        assert row is not None, f"no certificate with thumbprint {sha256}"
        return row


def locations(certificate_id: int) -> list[CertificateLocation]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(CertificateLocation)
                .where(CertificateLocation.certificate_id == certificate_id)
                .order_by(CertificateLocation.port)
            )
        )


def test_every_inventory_field_of_every_certificate(boot: Bootstrapped, farm: Farm, fleet: dict[str, Served]) -> None:
    closed = free_port()
    targets = [f"127.0.0.1:{farm.ports[name]}" for name in NAMES]
    targets += [f"127.0.0.1:{farm.second_good}", f"{VHOST}@127.0.0.1:{farm.vhost}", f"127.0.0.1:{closed}"]
    before = datetime.now(UTC)
    summary = discover(targets=targets, bot_id=boot.local_bot_id, concurrency=4)
    after = datetime.now(UTC)

    assert (summary.endpoints, summary.answered, summary.failed, summary.certificates_new) == (8, 7, 1, 5)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == 5
        run = s.get(DiscoveryRun, summary.run_id)
        assert run is not None
        assert (run.status, run.kind, run.bot_id) == ("Completed", "tls", boot.local_bot_id)
        assert (run.endpoints_total, run.endpoints_scanned, run.endpoints_answered, run.certificates_new) == (
            8,
            8,
            7,
            5,
        )
        assert run.finished_at is not None

    for name in NAMES:
        served = fleet[name]
        row = certificate(served.sha256)
        leaf = served.leaf
        cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert row.common_name == cn
        assert row.sans == ([cn] if name == "self_signed" else [cn, f"www.{cn}"])
        assert row.status is (CertificateStatus.EXPIRED if name == "expired" else CertificateStatus.DISCOVERED)
        assert row.discovery_bot_id == boot.local_bot_id
        assert (row.provisioning_bot_id, row.ca_connector_id, row.ca_order_id) == (None, None, None)
        assert row.issuer_ca == (cn if name == "self_signed" else "Test Intermediate CA")
        assert row.ca_type is CAType.PRIVATE
        assert row.trust_anchor is None  # no private root registered, and not a public chain
        assert row.signature_algorithm == SIGNATURES[name]
        assert row.serial_number == served.serial
        assert row.not_before == leaf.not_valid_before_utc
        assert row.expires_on == leaf.not_valid_after_utc
        assert row.issued_on == leaf.not_valid_before_utc
        assert (row.key_type, row.key_size) == KEYS[name]
        assert row.key_spec == KEY_SPECS[name]
        assert (row.sha1_thumbprint, row.sha256_thumbprint) == (served.sha1, served.sha256)
        assert row.vulnerability_reasons == expected_reasons(served)
        assert row.vulnerable is (name != "good")
        assert row.pem_chain == served.pem_chain
        assert row.private_key is None
        assert row.deployment_type is DeploymentType.MANUAL
        assert row.location_host == "127.0.0.1"
        assert (row.scan_ip, row.scan_port) == ("127.0.0.1", row.location_port)
        places = locations(row.id)
        expected_ports = (
            sorted([farm.ports["good"], farm.second_good, farm.vhost]) if name == "good" else [farm.ports[name]]
        )
        assert [p.port for p in places] == expected_ports
        assert row.location_port in expected_ports
        for place in places:
            assert (place.kind, place.host, place.scan_ip, place.scan_port) == (
                "tls",
                "127.0.0.1",
                "127.0.0.1",
                place.port,
            )
            assert place.sni == (VHOST if place.port == farm.vhost else "")
            assert place.locator == f"tls:127.0.0.1:{place.port}:{place.sni}"
            assert (place.discovery_bot_id, place.discovery_run_id) == (boot.local_bot_id, summary.run_id)
            assert place.last_status is LocationStatus.ACTIVE
            assert place.last_error is None
            assert before - timedelta(seconds=1) <= place.first_seen == place.last_seen <= after


def test_places_that_stop_answering_or_change_are_marked_not_deleted(
    boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path
) -> None:
    ports = {"a": free_port(), "b": free_port(), "c": free_port()}
    targets = [f"127.0.0.1:{p}" for p in ports.values()]
    first = [fleet["good"].spec(ports["a"]), fleet["expired"].spec(ports["b"]), fleet["self_signed"].spec(ports["c"])]
    with TlsFarm(first, tmp_path / "one"):
        one = discover(targets=targets, bot_id=boot.local_bot_id)
    assert one.answered == 3
    good_first = locations(certificate(fleet["good"].sha256).id)[0]

    # a keeps its certificate, b now serves another one, c is gone
    with TlsFarm([fleet["good"].spec(ports["a"]), fleet["sha1"].spec(ports["b"])], tmp_path / "two"):
        two = discover(targets=targets, bot_id=boot.local_bot_id)
    assert (two.answered, two.failed, two.certificates_new) == (2, 1, 1)

    (a,) = locations(certificate(fleet["good"].sha256).id)
    assert a.last_status is LocationStatus.ACTIVE
    assert a.first_seen == good_first.first_seen
    assert a.last_seen > good_first.last_seen
    assert a.discovery_run_id == two.run_id

    (b_old,) = locations(certificate(fleet["expired"].sha256).id)
    assert b_old.last_status is LocationStatus.REPLACED
    (b_new,) = locations(certificate(fleet["sha1"].sha256).id)
    assert (b_new.port, b_new.last_status) == (ports["b"], LocationStatus.ACTIVE)

    (c,) = locations(certificate(fleet["self_signed"].sha256).id)
    assert c.last_status is LocationStatus.NOT_RESPONDING
    assert c.last_error == "connection refused"
    assert c.last_seen < c.last_checked_at  # seen in the first run only, checked in the second
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == 4  # nothing was deleted

    # c answers again with the same certificate: Active again
    with TlsFarm([fleet["self_signed"].spec(ports["c"])], tmp_path / "three"):
        discover(targets=[f"127.0.0.1:{ports['c']}"], bot_id=boot.local_bot_id)
    (c,) = locations(certificate(fleet["self_signed"].sha256).id)
    assert (c.last_status, c.last_error) == (LocationStatus.ACTIVE, None)


def test_a_scan_of_an_address_asks_again_for_every_name_recorded_there(
    boot: Bootstrapped, fleet: dict[str, Served], tmp_path: Path
) -> None:
    """A place recorded under an SNI name does not stay Active on the certificate it served before (issue 15)."""
    port, name = free_port(), "www.sni.test"
    with TlsFarm([fleet["good"].spec(port, sni={name: fleet["expired"]})], tmp_path / "one"):
        discover(targets=[f"{name}@127.0.0.1:{port}"], bot_id=boot.local_bot_id)
    (named,) = locations(certificate(fleet["expired"].sha256).id)
    assert (named.sni, named.last_status) == (name, LocationStatus.ACTIVE)

    # the server now answers that name with another certificate; the scan names only the address
    with TlsFarm([fleet["good"].spec(port, sni={name: fleet["sha1"]})], tmp_path / "two"):
        two = discover(targets=[f"127.0.0.1:{port}"], bot_id=boot.local_bot_id)
    assert (two.endpoints, two.answered) == (2, 2)  # the address, and the name recorded there
    (named,) = locations(certificate(fleet["expired"].sha256).id)
    assert named.last_status is LocationStatus.REPLACED
    (renamed,) = locations(certificate(fleet["sha1"].sha256).id)
    assert (renamed.sni, renamed.host, renamed.last_status) == (name, name, LocationStatus.ACTIVE)
    (plain,) = locations(certificate(fleet["good"].sha256).id)
    assert (plain.sni, plain.last_status) == ("", LocationStatus.ACTIVE)


def test_without_targets_the_registered_servers_are_scanned(
    boot: Bootstrapped, farm: Farm, fleet: dict[str, Served]
) -> None:
    with session_scope() as s:
        s.add(
            Server(
                description="web", host="127.0.0.1", ports=[farm.ports["good"], farm.ports["sha1"]],
                connection=ServerConnection.LOCAL, server_type="generic",
            )
        )  # fmt: skip
    summary = discover(bot_id=boot.local_bot_id)
    assert (summary.endpoints, summary.answered) == (2, 2)
    assert {p.port for p in locations(certificate(fleet["good"].sha256).id)} == {farm.ports["good"]}


def test_host_names_are_resolved_and_sent_as_sni(boot: Bootstrapped, farm: Farm, fleet: dict[str, Served]) -> None:
    summary = discover(targets=[f"localhost:{farm.ports['good']}"], bot_id=boot.local_bot_id)
    assert summary.answered == 1  # ::1, if localhost has it, is not listened on
    (place,) = locations(certificate(fleet["good"].sha256).id)
    assert (place.host, place.scan_ip, place.sni) == ("localhost", "127.0.0.1", "localhost")
    assert certificate(fleet["good"].sha256).location_host == "localhost"


def _bot(name: str, purpose: BotPurpose, status: BotStatus) -> int:
    with session_scope() as s:
        bot = Bot(name=name, purpose=purpose, status=status, work_queue=name)
        s.add(bot)
        s.flush()
        return bot.id


@pytest.mark.parametrize(
    ("purpose", "status", "message"),
    [
        (BotPurpose.PROVISIONING, BotStatus.ACTIVE, "only provisions; set its purpose to Discovery"),
        (BotPurpose.DISCOVERY, BotStatus.STOPPED, "is Stopped; start it before discovering"),
    ],
)
def test_a_bot_that_cannot_discover_is_refused(
    boot: Bootstrapped, farm: Farm, purpose: BotPurpose, status: BotStatus, message: str
) -> None:
    bot_id = _bot("edge-bot", purpose, status)
    with pytest.raises(DiscoveryError, match=message):
        discover(targets=[f"127.0.0.1:{farm.ports['good']}"], bot_id=bot_id)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(DiscoveryRun)) == 0
        assert s.scalar(select(func.count()).select_from(Certificate)) == 0


def test_a_discovery_bot_is_recorded_as_the_finder(boot: Bootstrapped, farm: Farm, fleet: dict[str, Served]) -> None:
    bot_id = _bot("scanner-dmz", BotPurpose.DISCOVERY, BotStatus.ACTIVE)
    discover(targets=[f"127.0.0.1:{farm.ports['sha1']}"], bot_id=bot_id)
    row = certificate(fleet["sha1"].sha256)
    assert row.discovery_bot_id == bot_id
    assert locations(row.id)[0].discovery_bot_id == bot_id


def test_bad_targets_are_refused_with_the_entry_named(boot: Bootstrapped) -> None:
    with pytest.raises(DiscoveryError, match=r"target '10.0.0.0/40' is not a valid CIDR range"):
        discover(targets=["127.0.0.1", "10.0.0.0/40"], bot_id=boot.local_bot_id)
    with pytest.raises(DiscoveryError, match=r"port 'https' is not a number"):
        discover(targets=["127.0.0.1"], ports="https", bot_id=boot.local_bot_id)


def test_names_that_do_not_resolve_are_reported(boot: Bootstrapped) -> None:
    summary = discover(targets=["nothing.invalid"], bot_id=boot.local_bot_id)  # RFC 6761: never resolves
    assert (summary.endpoints, summary.answered) == (0, 0)
    assert list(summary.unresolved) == ["nothing.invalid"]
    assert summary.unresolved["nothing.invalid"].startswith("cannot resolve nothing.invalid")
    with session_scope() as s:
        run = s.get(DiscoveryRun, summary.run_id)
        assert run is not None
        assert (run.status, run.endpoints_total, run.errors) == (
            "Completed",
            0,
            [summary.unresolved["nothing.invalid"]],
        )


def test_a_scheduled_run_without_servers_has_nothing_to_do(boot: Bootstrapped) -> None:
    summary = discover(bot_id=boot.local_bot_id)  # what the daily schedule runs on a fresh install
    assert (summary.endpoints, summary.answered) == (0, 0)
    with session_scope() as s:
        run = s.get(DiscoveryRun, summary.run_id)
        assert run is not None
        assert run.status == "Completed"
        assert run.errors == ["no targets given and no registered server of this bot has a port: nothing was scanned"]
    with pytest.raises(DiscoveryError, match="no target given"):
        discover(targets=[], bot_id=boot.local_bot_id)


def _scan_process_failing(monkeypatch: pytest.MonkeyPatch, marker: Path, times: int) -> None:
    """The scan process dies (status 9, a line on stderr) its first `times` starts, then works."""
    code = (
        "import pathlib, runpy, sys; m = pathlib.Path(sys.argv[1]); n = int(m.read_text() or 0) if m.exists() else 0\n"
        f"if n < {times}: m.write_text(str(n + 1)); sys.stderr.write('killed for memory\\n'); sys.exit(9)\n"
        "runpy.run_module('certfleet.discovery.scan_process', run_name='__main__')"
    )
    scan_process.close_spares()  # started with the real command by an earlier test
    monkeypatch.setattr(flows_discovery, "prestart", lambda count: None)  # each start counts: start on demand
    monkeypatch.setattr(scan_process, "child_command", lambda: [sys.executable, "-c", code, str(marker)])


def test_a_scan_process_that_dies_is_retried(
    boot: Bootstrapped, farm: Farm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _scan_process_failing(monkeypatch, tmp_path / "starts", times=1)
    summary = discover(targets=[f"127.0.0.1:{farm.ports['good']}"], bot_id=boot.local_bot_id)
    assert (summary.endpoints, summary.answered, summary.failed_batches) == (1, 1, 0)
    assert (tmp_path / "starts").read_text() == "1"  # it did die once


def test_a_scan_process_that_keeps_dying_fails_the_run_with_its_words(
    boot: Bootstrapped, farm: Farm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _scan_process_failing(monkeypatch, tmp_path / "starts", times=99)
    with pytest.raises(DiscoveryFailed, match=r"exited with status 9 after 0 of 1 endpoints: killed for memory"):
        discover(targets=[f"127.0.0.1:{farm.ports['good']}"], bot_id=boot.local_bot_id)
    assert (tmp_path / "starts").read_text() == "3"  # the first try and two retries
    with session_scope() as s:
        run = s.scalars(select(DiscoveryRun).order_by(DiscoveryRun.id.desc())).first()
        assert run is not None
        assert run.status == "Failed"
        assert any("killed for memory" in error for error in run.errors or [])


def test_scan_limits_out_of_range_are_refused(boot: Bootstrapped) -> None:
    with pytest.raises(DiscoveryError, match="concurrency 0 must be between 1 and 20000"):
        discover(targets=["127.0.0.1"], concurrency=0, bot_id=boot.local_bot_id)
    with pytest.raises(DiscoveryError, match="connect timeout 500 s must be above 0 and at most 120"):
        discover(targets=["127.0.0.1"], connect_timeout=500, bot_id=boot.local_bot_id)

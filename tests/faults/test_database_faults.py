"""Database faults: SQLite busy (another writer holds the lock) and PostgreSQL connections lost mid-flow.

- SQLite: while another connection holds the write lock, certfleet's unit of work waits (busy_timeout)
  instead of failing, then commits; the other writer's change to the same row is kept.
- PostgreSQL: every connection of certfleet's pool is terminated by the server (pg_terminate_backend) in
  the middle of the issue flow, between two units of work of a task; the flow goes on (the pool pings
  before use) and records one order and the certificate. Terminated inside a unit of work, the task fails,
  nothing half-written stays, and the re-run issues through the same order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from certfleet.flows.issuance import issue_certificate
from certfleet.models import db, repo
from certfleet.models.bootstrap import Bootstrapped, initialize
from certfleet.models.db import session_scope
from certfleet.models.orm import Base, Certificate, CertificateStatus, Order, OrderState
from certfleet.settings import get_settings
from certfleet.tasks import ca_runtime, issuance
from tests.conftest import use_settings


def _certificate(boot: Bootstrapped, name: str) -> int:
    with session_scope() as s:
        cert = Certificate(common_name=name, ca_connector_id=boot.ca_connector_id, key_spec="ec-p256")
        s.add(cert)
        s.flush()
        return cert.id


# -- SQLite busy -----------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bootstrapped]:
    use_settings(monkeypatch, tmp_path / "data", None)
    yield initialize()
    db.dispose_engines()


def test_sqlite_busy_waits_for_the_lock_and_keeps_the_other_update(sqlite_boot: Bootstrapped) -> None:
    cert_id = _certificate(sqlite_boot, "busy.example.test")
    with session_scope() as s:
        order = Order(
            certificate_id=cert_id, ca_connector_id=sqlite_boot.ca_connector_id, idempotency_key="busy", csr_pem="x"
        )
        s.add(order)
        s.flush()
        order_id = order.id
    path = make_url(get_settings().sqlalchemy_url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE orders SET error = 'written by the other writer' WHERE id = ?", (order_id,))

    failures: list[BaseException] = []

    def record() -> None:
        try:
            ca_runtime.DbOrderJournal(sqlite_boot.ca_connector_id).placed("busy", "CA-42")
        except BaseException as exc:
            failures.append(exc)

    done = threading.Thread(target=record)
    done.start()
    done.join(1.0)
    assert done.is_alive()  # waiting on the lock (SQLITE_BUSY is retried for busy_timeout), not failed
    other.execute("COMMIT")
    other.close()
    done.join(30)
    assert not done.is_alive()
    assert failures == []
    with session_scope() as s:
        order = repo.get(s, Order, order_id)
        assert order.ca_order_id == "CA-42"
        assert order.error == "written by the other writer"  # no lost update


# -- PostgreSQL connections lost -------------------------------------------------------------------------


@pytest.fixture
def pg_boot(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bootstrapped]:
    use_settings(monkeypatch, tmp_path / "data", postgres_url)
    yield initialize()
    engine = db.get_engine(postgres_url)
    with engine.begin() as conn:  # the next test's data directory has another key: start from empty tables
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose_engines()


def _terminate_connections(url: str) -> int:
    """The server ends every other connection to certfleet's database, as a failover or restart does."""
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            conn.commit()
            return int(killed)
    finally:
        admin.dispose()


def test_postgres_connections_lost_between_units_of_work(
    pg_boot: Bootstrapped, postgres_url: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_id = _certificate(pg_boot, "failover.example.test")
    killed: list[int] = []
    real = issuance.generate_private_key

    def generate_private_key(spec: Any) -> Any:  # create_order runs this between its two units of work
        killed.append(_terminate_connections(postgres_url))
        return real(spec)

    monkeypatch.setattr(issuance, "generate_private_key", generate_private_key)
    serial = issue_certificate(cert_id)
    assert killed[0] >= 1  # certfleet's pooled connection was among them
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.ISSUED
        cert = repo.get(s, Certificate, cert_id)
        assert (cert.status, cert.serial_number) == (CertificateStatus.ISSUED, serial)


def test_postgres_connection_lost_inside_a_unit_of_work(
    pg_boot: Bootstrapped, postgres_url: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_id = _certificate(pg_boot, "midway.example.test")
    real = issuance.build_ca

    def build_ca(session: Any, connector: Any) -> Any:  # submit_order's unit of work is open here
        _terminate_connections(postgres_url)
        return real(session, connector)

    monkeypatch.setattr(issuance, "build_ca", build_ca)
    assert issue_certificate(cert_id, return_state=True).is_failed()
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.SUBMITTED  # written by the unit before; nothing of the lost one
        assert order.pem_chain is None
        assert repo.get(s, Certificate, cert_id).serial_number is None
    monkeypatch.setattr(issuance, "build_ca", real)
    serial = issue_certificate(cert_id)  # the re-run
    with session_scope() as s:
        (order,) = s.scalars(select(Order).where(Order.certificate_id == cert_id))
        assert order.state is OrderState.ISSUED
        assert repo.get(s, Certificate, cert_id).serial_number == serial

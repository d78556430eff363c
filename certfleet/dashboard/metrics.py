"""The series /metrics exposes, computed per scrape by a few aggregate SQL queries (no ORM object per row).

Per-certificate expiry series are capped (CERTFLEET_METRICS_MAX_CERTIFICATES): the soonest-expiring certificates
get their own series, so the ones an alert is about are never the ones left out; the rest are counted in
`certfleet_certificates_beyond_cap`, and every certificate is counted in `certfleet_certificates_expiring_within_days`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, select
from sqlalchemy.engine import Connection

from certfleet.models.orm import (
    Bot,
    CAConnector,
    Certificate,
    CertificateStatus,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Order,
    OrderState,
    Server,
    utcnow,
)
from certfleet.renewal.runs import last_completed

# Cumulative days-to-expiry thresholds of certfleet_certificates_expiring_within_days (0: already expired).
EXPIRY_DAYS = (0, 1, 7, 14, 30, 90)
_STREAM_ROWS = 2000


class FleetCollector(Collector):
    """Reads the database once per scrape; `now` and `cap` are fixed for the scrape (tests pass their own)."""

    def __init__(self, conn: Connection, cap: int, now: datetime | None = None) -> None:
        self.conn, self.cap, self.now = conn, cap, now or utcnow()

    def collect(self) -> Iterator[Metric]:
        yield from self._certificates()
        yield self._counts(
            "certfleet_deployments",
            "Deployments recorded, by status (Running, Deployed, Rolled Back, Deployment Failed)",
            Deployment.status,
            DeploymentStatus,
        )
        yield self._counts(
            "certfleet_orders",
            "CA orders (issuance and renewal) recorded, by state; Issued counts the renewals that issued",
            Order.state,
            OrderState,
        )
        yield self._batches()
        yield self._bots()
        yield self._last_renewal_run()

    def _counts(self, name: str, doc: str, column: Any, values: Iterable[enum.Enum]) -> Metric:
        """A gauge per value of a status column, 0 for values no row has (so a rate or alert sees the series)."""
        family = GaugeMetricFamily(name, doc, labels=["status"])
        found = {str(v): n for v, n in self.conn.execute(select(column, func.count()).group_by(column))}
        for value in values:
            family.add_metric([str(value)], found.pop(str(value), 0))
        for unknown, n in found.items():  # a value the enum no longer names: still counted
            family.add_metric([unknown], n)
        return family

    def _certificates(self) -> Iterator[Metric]:
        yield self._counts("certfleet_certificates", "Certificates by status", Certificate.status, CertificateStatus)
        expiring = select(
            func.count(Certificate.expires_on),
            *(
                func.coalesce(func.sum(case((Certificate.expires_on <= self.now + timedelta(days=d), 1), else_=0)), 0)
                for d in EXPIRY_DAYS
            ),
        )
        with_expiry, *within = self.conn.execute(expiring).one()
        family = GaugeMetricFamily(
            "certfleet_certificates_expiring_within_days",
            "Certificates (all, also those beyond the cap) that expire within this many days (0: expired)",
            labels=["days"],
        )
        for days, n in zip(EXPIRY_DAYS, within, strict=True):
            family.add_metric([str(days)], int(n))
        yield family
        yield GaugeMetricFamily(
            "certfleet_certificates_beyond_cap",
            "Certificates with an expiry that have no expiry series of their own (CERTFLEET_METRICS_MAX_CERTIFICATES)",
            value=max(0, int(with_expiry) - self.cap),
        )
        yield self._expiries()

    def _expiries(self) -> Metric:
        first_server = (
            select(Server.host)
            .join(DeploymentTarget, DeploymentTarget.server_id == Server.id)
            .where(DeploymentTarget.certificate_id == Certificate.id)
            .order_by(DeploymentTarget.id)
            .limit(1)
            .scalar_subquery()
        )
        rows = self.conn.execution_options(yield_per=_STREAM_ROWS).execute(
            select(
                Certificate.id,
                Certificate.common_name,
                func.coalesce(CAConnector.name, literal("")),
                func.coalesce(first_server, Certificate.location_host, literal("")),
                Certificate.status,
                Certificate.expires_on,
            )
            .outerjoin(CAConnector, CAConnector.id == Certificate.ca_connector_id)
            .where(Certificate.expires_on.is_not(None))
            .order_by(Certificate.expires_on, Certificate.id)
            .limit(self.cap)
        )
        family = GaugeMetricFamily(
            "certfleet_certificate_expiry_timestamp_seconds",
            "When the certificate expires (Unix time); server: its first deployment target's host, else where "
            "discovery saw it. Only the soonest-expiring CERTFLEET_METRICS_MAX_CERTIFICATES certificates",
            labels=["id", "common_name", "ca_connector", "server", "status"],
        )
        for cert_id, common_name, connector, server, status, expires_on in rows:
            family.add_metric([str(cert_id), common_name, connector, server, str(status)], expires_on.timestamp())
        return family

    def _batches(self) -> Metric:
        """Batch progress: one GROUP BY; only the statuses a batch has (a batch is done when all are Deployed)."""
        family = GaugeMetricFamily(
            "certfleet_batch_certificates",
            "Certificates of each named batch (Batch Name), by status",
            labels=["batch", "status"],
        )
        column = Certificate.batch_name
        for batch, status, n in self.conn.execute(
            select(column, Certificate.status, func.count())
            .where(column.is_not(None))
            .group_by(column, Certificate.status)
            .order_by(column)
        ):
            family.add_metric([str(batch), str(status)], n)
        return family

    def _bots(self) -> Metric:
        family = GaugeMetricFamily(
            "certfleet_bot_last_heartbeat_age_seconds",
            "Seconds since the bot last checked in (bots that never did have no series)",
            labels=["bot"],
        )
        for name, last_update in self.conn.execute(
            select(Bot.name, Bot.last_update).where(Bot.last_update.is_not(None))
        ):
            assert last_update is not None
            family.add_metric([name], max(0.0, (self.now - last_update).total_seconds()))
        return family

    def _last_renewal_run(self) -> Metric:
        at = last_completed(self.conn)
        return GaugeMetricFamily(
            "certfleet_last_renewal_run_completed_timestamp_seconds",
            "When a renew-expiring run last ran to its end (Unix time); 0 if none ever did",
            value=at.timestamp() if at is not None else 0.0,
        )


def exposition(conn: Connection, cap: int, now: datetime | None = None) -> bytes:
    """The Prometheus text format of one scrape."""
    registry = CollectorRegistry(auto_describe=False)  # no describe: register() does not run the queries
    registry.register(FleetCollector(conn, cap, now))
    return generate_latest(registry)

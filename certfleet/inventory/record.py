"""Record what discovery saw, in bulk: one certificate row per distinct certificate, one row per place.

A batch (a few hundred endpoints or files) is recorded in one transaction with a handful of statements:
look up the thumbprints, insert the new certificates, upsert the locations, mark the places that now
serve another certificate or did not answer. Each distinct certificate is parsed once, and only if the
inventory does not hold it yet; the parsing happens before the write transaction opens.

Concurrent batches (threads of one run, or several runs) must not insert the same certificate twice,
and the certificates table has no unique thumbprint: the write transaction first takes the writer
lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), then looks again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel
from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certfleet.inventory.analysis import CertificateFacts, analyze, certificate_values, load_chain, thumbprint
from certfleet.inventory.chains import ca_certificates, complete_new, complete_waiting
from certfleet.inventory.trust import TrustStore, system_roots
from certfleet.models.db import session_scope
from certfleet.models.orm import (
    Certificate,
    CertificateLocation,
    CertificateStatus,
    LocationStatus,
    PrivateRoot,
)
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.parse import order_chain

_ADVISORY_LOCK_KEY = 0x63657274_666C74  # "certflt": one key for inventory writers
_CHUNK = 500  # bound parameters per IN (...) list, well under every driver's limit
T = TypeVar("T")
_CERTIFICATES: Table = Certificate.__table__  # type: ignore[assignment]  # declarative tables are Tables
_LOCATIONS: Table = CertificateLocation.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Sighting:
    """A certificate chain (DER, leaf first) found at one place."""

    chain: tuple[bytes, ...]
    kind: str  # tls, file, upload
    locator: str
    host: str | None = None
    port: int | None = None
    scan_ip: str | None = None
    scan_port: int | None = None
    sni: str = ""
    server_id: int | None = None
    path: str | None = None
    chain_is_ordered: bool = True  # False for files, whose certificates come in any order


@dataclass(frozen=True)
class Miss:
    """A place that was checked and gave no certificate: recorded only where a certificate was seen before."""

    locator: str
    error: str
    status: LocationStatus = LocationStatus.NOT_RESPONDING


class RecordSummary(BaseModel):
    """What one recorded batch changed."""

    sightings: int = 0
    misses: int = 0
    certificates: int = 0  # distinct certificates in the batch
    new_certificates: int = 0
    new_certificate_ids: list[int] = []
    certificate_ids: dict[str, int] = {}  # thumbprint -> certificate id, for every readable chain
    completed_chain_ids: list[int] = []  # stored certificates whose chain this batch's CA certificates completed
    unreadable: int = 0  # chains that could not be decoded (counted as misses too)
    errors: list[str] = []

    def add(self, done: RecordSummary) -> None:
        """Adds another batch's summary to this one. (`certificates` is summed: a certificate seen in two
        batches counts twice, as it did when each batch was reported on its own.)"""
        self.sightings += done.sightings
        self.misses += done.misses
        self.certificates += done.certificates
        self.new_certificates += done.new_certificates
        self.new_certificate_ids += done.new_certificate_ids
        self.certificate_ids.update(done.certificate_ids)
        self.completed_chain_ids += done.completed_chain_ids
        self.unreadable += done.unreadable
        self.errors = sorted({*self.errors, *done.errors})


@dataclass
class _Parsed:
    facts: dict[str, CertificateFacts] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # thumbprint -> why it cannot be recorded


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- trust store, cached per set of private roots ----------------------------------------------------------

_trust_lock = threading.Lock()
_trust_cache: tuple[tuple[tuple[int, str, bool], ...], TrustStore] | None = None


def trust_store(session: Session) -> TrustStore:
    """The system roots plus the registered private roots; rebuilt only when the private roots change."""
    global _trust_cache
    rows = session.execute(
        select(PrivateRoot.id, PrivateRoot.sha256_thumbprint, PrivateRoot.apply_public_rules).order_by(PrivateRoot.id)
    ).all()
    key = tuple((row[0], row[1], bool(row[2])) for row in rows)
    with _trust_lock:
        if _trust_cache is not None and _trust_cache[0] == key:
            return _trust_cache[1]
    roots = session.execute(
        select(PrivateRoot.name, PrivateRoot.pem, PrivateRoot.apply_public_rules).order_by(PrivateRoot.id)
    ).all()
    loaded = [(name, x509.load_pem_x509_certificate(pem.encode()), held) for name, pem, held in roots]
    store = TrustStore(
        system_roots(), [(name, cert) for name, cert, _ in loaded], [cert for _, cert, held in loaded if held]
    )
    with _trust_lock:
        _trust_cache = (key, store)
    return store


def forget_trust_store() -> None:
    """After private roots change, so the next batch rebuilds the store at once."""
    global _trust_cache
    with _trust_lock:
        _trust_cache = None


# --- recording ---------------------------------------------------------------------------------------------


def lock_inventory(session: Session) -> None:
    """Serialise inventory writers; must be the first statement of the transaction."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    elif dialect == "sqlite":
        # Deferred transactions read a snapshot first and then fail to upgrade when another writer
        # committed; taking the write lock up front makes the writer wait (busy_timeout) instead.
        session.execute(text("BEGIN IMMEDIATE"))


def existing_certificates(session: Session, prints: Iterable[str]) -> dict[str, int]:
    """Thumbprint -> certificate id for those the inventory holds."""
    found: dict[str, int] = {}
    wanted = sorted(set(prints))
    for part in chunks(wanted):
        rows = session.execute(
            select(Certificate.sha256_thumbprint, Certificate.id)
            .where(Certificate.sha256_thumbprint.in_(part))
            .order_by(Certificate.id)
        ).all()
        for print_, ident in rows:
            if print_ is not None:
                found.setdefault(print_, ident)  # the oldest row wins if two ever share a thumbprint
        # A managed certificate renewed but not yet proven on its servers: what they still serve is its own.
        served = session.execute(
            select(Certificate.served_sha256_thumbprint, Certificate.id)
            .where(Certificate.served_sha256_thumbprint.in_(part))
            .order_by(Certificate.id)
        ).all()
        for print_, ident in served:
            if print_ is not None:
                found.setdefault(print_, ident)
    return found


def _parse_new(firsts: dict[str, Sighting], known: set[str], trust: TrustStore, now: datetime) -> _Parsed:
    parsed = _Parsed()
    for print_, sighting in firsts.items():
        if print_ in known:
            continue
        try:
            chain = load_chain(sighting.chain)
            if not sighting.chain_is_ordered:
                chain = order_chain(chain)
            parsed.facts[print_] = analyze(chain, trust, now)
        except CertificateFormatError as exc:
            parsed.errors[print_] = f"unreadable certificate: {exc}"
    return parsed


def record(
    sightings: Sequence[Sighting],
    misses: Sequence[Miss] = (),
    *,
    now: datetime,
    bot_id: int | None,
    run_id: int | None = None,
    extra_values: dict[str, dict[str, Any]] | None = None,
) -> RecordSummary:
    """Record a batch in one write transaction; returns what changed. `extra_values` holds extra columns of
    new rows by thumbprint (an imported private key)."""
    firsts: dict[str, Sighting] = {}
    prints: list[str] = []
    for sighting in sightings:
        print_ = _leaf_print(sighting)
        prints.append(print_)
        firsts.setdefault(print_, sighting)
    summary = RecordSummary(sightings=len(sightings), misses=len(misses), certificates=len(firsts))

    with session_scope() as s:  # read-only: what must be parsed
        trust = trust_store(s)
        known = set(existing_certificates(s, firsts)) if firsts else set()
    parsed = _parse_new(firsts, known, trust, now)

    bad = [(sighting, parsed.errors[p]) for sighting, p in zip(sightings, prints, strict=True) if p in parsed.errors]
    all_misses = [*misses, *(Miss(sighting.locator, error) for sighting, error in bad)]
    summary.unreadable = len(bad)
    summary.errors = sorted({error for _, error in bad})

    with session_scope() as s:
        lock_inventory(s)
        ids = existing_certificates(s, firsts) if firsts else {}
        seen_before = [ids[p] for p in firsts if p in ids]
        new_rows = []
        for print_, sighting in firsts.items():
            if print_ in ids or print_ in parsed.errors:
                continue
            if print_ not in parsed.facts:  # known a moment ago, deleted since: parse it after all
                parsed.facts.update(_parse_new({print_: sighting}, set(), trust, now).facts)
            facts = parsed.facts.get(print_)
            if facts is None:
                continue
            facts = complete_new(s, facts, trust, now)  # intermediates imported before the leaf
            values = certificate_values(facts, now=now, discovery_bot_id=bot_id)
            values.update(_location_columns(sighting))
            values.update((extra_values or {}).get(print_, {}))
            new_rows.append(values)
        if new_rows:
            inserted = s.execute(
                _CERTIFICATES.insert().returning(Certificate.id, Certificate.sha256_thumbprint),
                _same_keys(new_rows),
            ).all()
            for ident, inserted_print in inserted:
                ids[str(inserted_print)] = ident
            summary.new_certificate_ids = sorted(ident for ident, _ in inserted)
            summary.new_certificates = len(inserted)
        summary.certificate_ids = {p: ids[p] for p in firsts if p in ids}
        where = {ids[p]: sighting for p, sighting in firsts.items() if p in ids}
        _refresh_existing(s, seen_before, where, bot_id, now)
        good = [(sighting, ids[p]) for sighting, p in zip(sightings, prints, strict=True) if p in ids]
        _upsert_locations(s, good, bot_id=bot_id, run_id=run_id, now=now)
        _mark_misses(s, all_misses, now)
        cas = _batch_cas(sightings)
        if cas:
            summary.completed_chain_ids = complete_waiting(s, cas, trust, now)
    return summary


def _batch_cas(sightings: Sequence[Sighting]) -> list[x509.Certificate]:
    """The CA certificates a batch carries (a few distinct intermediates, however many sightings)."""
    ders = {der for sighting in sightings for der in sighting.chain}
    certificates = []
    for der in ders:
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue  # an unreadable certificate is reported with its sighting
    return ca_certificates(certificates)


def _same_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs every row to bind the same columns."""
    keys = {key for row in rows for key in row}
    return [{key: row.get(key) for key in keys} for row in rows]


def _leaf_print(sighting: Sighting) -> str:
    if sighting.chain_is_ordered or len(sighting.chain) == 1:
        return thumbprint(sighting.chain[0])
    try:
        leaf = order_chain(load_chain(sighting.chain))[0]
    except CertificateFormatError:
        return thumbprint(sighting.chain[0])
    return thumbprint(leaf.public_bytes(serialization.Encoding.DER))


def _location_columns(sighting: Sighting) -> dict[str, Any]:
    """The 'Certificate Location' and 'Scan IP/Port' columns of a new row: where it was first seen."""
    if sighting.kind != "tls":
        return {"location_host": sighting.host, "location_port": None}
    return {
        "location_host": sighting.host,
        "location_port": sighting.port,
        "scan_ip": sighting.scan_ip,
        "scan_port": sighting.scan_port,
    }


def _refresh_existing(
    s: Session, ids: list[int], where: dict[int, Sighting], bot_id: int | None, now: datetime
) -> None:
    """Known certificates seen again: fill a missing location or discovery bot; Discovered -> Expired."""
    if not ids:
        return
    for part in chunks(ids):
        s.execute(
            update(Certificate)
            .where(Certificate.id.in_(part), Certificate.status == CertificateStatus.DISCOVERED)
            .where(Certificate.expires_on <= now)
            .values(status=CertificateStatus.EXPIRED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if bot_id is not None:
            s.execute(
                update(Certificate)
                .where(Certificate.id.in_(part), Certificate.discovery_bot_id.is_(None))
                .values(discovery_bot_id=bot_id)
                .execution_options(synchronize_session=False)
            )
        unplaced = s.scalars(
            select(Certificate.id).where(Certificate.id.in_(part), Certificate.location_host.is_(None))
        )
        for ident in list(unplaced):
            s.execute(
                update(Certificate)
                .where(Certificate.id == ident)
                .values(**_location_columns(where[ident]))
                .execution_options(synchronize_session=False)
            )


def _upsert_locations(
    s: Session, good: Sequence[tuple[Sighting, int]], *, bot_id: int | None, run_id: int | None, now: datetime
) -> None:
    if not good:
        return
    table = _LOCATIONS
    rows = [
        {
            "certificate_id": cert_id,
            "kind": sighting.kind,
            "locator": sighting.locator,
            "host": sighting.host,
            "port": sighting.port,
            "scan_ip": sighting.scan_ip,
            "scan_port": sighting.scan_port,
            "sni": sighting.sni,
            "server_id": sighting.server_id,
            "path": sighting.path,
            "discovery_bot_id": bot_id,
            "discovery_run_id": run_id,
            "first_seen": now,
            "last_seen": now,
            "last_checked_at": now,
            "last_status": LocationStatus.ACTIVE,
            "last_error": None,
        }
        for sighting, cert_id in good
    ]
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    changing = ("host", "port", "discovery_bot_id", "discovery_run_id", "last_seen", "last_checked_at")
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.certificate_id, table.c.locator],
        set_={
            **{name: insert.excluded[name] for name in changing},
            "last_status": insert.excluded.last_status,
            "last_error": None,
        },
    )
    s.execute(statement, rows)
    # Anything else at these places was there before and is no longer served: mark it, keep it.
    locators = [sighting.locator for sighting, _ in good]
    for part in chunks(locators):
        s.execute(
            update(CertificateLocation)
            .where(
                CertificateLocation.locator.in_(part),
                CertificateLocation.last_seen < now,
                CertificateLocation.last_status != LocationStatus.REPLACED,
            )
            .values(last_status=LocationStatus.REPLACED, last_checked_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )


def _mark_misses(s: Session, misses: Sequence[Miss], now: datetime) -> None:
    """Only places that had a certificate are recorded: a /16 of closed ports adds no rows."""
    if not misses:
        return
    known: set[str] = set()
    for part in chunks([miss.locator for miss in misses]):
        known.update(s.scalars(select(CertificateLocation.locator).where(CertificateLocation.locator.in_(part))))
    for miss in misses:
        if miss.locator not in known:
            continue
        s.execute(
            update(CertificateLocation)
            .where(
                CertificateLocation.locator == miss.locator,
                CertificateLocation.last_status != LocationStatus.REPLACED,
            )
            .values(last_status=miss.status, last_error=miss.error[:2000], last_checked_at=now)
            .execution_options(synchronize_session=False)
        )


class BackgroundRecorder:
    """Records sightings and misses in chunks on its own thread while the caller keeps producing them.

    A scan hands over each result as it completes; every `chunk` results become one `record()` call (one
    write transaction) on the recorder thread, so parsing and writing overlap the handshakes still going
    on (in a scan process, or in this one: the ssl module releases the GIL while OpenSSL works). `close()`
    flushes, waits, and re-raises the first error a chunk met.
    """

    def __init__(self, sink: Callable[[list[Sighting], list[Miss]], RecordSummary], *, chunk: int = 250) -> None:
        self.sink = sink  # records one chunk: `record()` here, certfleet's bot API on a bot
        self.chunk = chunk
        self.summary = RecordSummary()
        self._sightings: list[Sighting] = []
        self._misses: list[Miss] = []
        self._queue: queue.SimpleQueue[tuple[list[Sighting], list[Miss]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="inventory-recorder", daemon=True)
        self._thread.start()

    def add(self, item: Sighting | Miss) -> None:
        if isinstance(item, Sighting):
            self._sightings.append(item)
        else:
            self._misses.append(item)
        if len(self._sightings) + len(self._misses) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._sightings or self._misses:
            self._queue.put((self._sightings, self._misses))
            self._sightings, self._misses = [], []

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: one failed chunk fails the batch, the rest is not written half-way
            try:
                done = self.sink(item[0], item[1])
            except BaseException as exc:  # handed to close(), which raises it in the caller's thread
                self._error = exc
                continue
            self.summary.add(done)

    def close(self) -> RecordSummary:
        self._flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.summary

"""S/MIME at scale: directory sync from the Entra ID + Graph emulator, and rollout with the built-in CA.

Prints one JSON line:
- sync_users_per_s: the real sync-directory flow reading --sync-users users (pages of 999) over HTTPS from the
  emulator (tests/emulators/azure_ad.py, in this process) into a fresh database (SQLite, or PostgreSQL with
  --database-url), timed after one warm-up flow run with no users;
- rollout_users_per_s: the real smime-rollout flow (order row, key + CSR, issue, PKCS#12 to a folder) for
  --rollout-users of them, under Prefect's test server;
- bare_users_per_s: a bare Python loop doing the same key, CSR, signing and PKCS#12 work with the same built-in
  CA, without Prefect or the database; ratio = rollout / bare;
- peak_mb: the process's peak RSS; key: the key type (--key rsa2048, the default, or --key p256).
Goals (issue 14): sync at least 2,000 users/s, ratio at least 0.5 for both key types, memory flat in users.

    uv run python benchmarks/smime.py
    uv run python benchmarks/smime.py --key p256 --rollout-users 200
    uv run python benchmarks/smime.py --sync-only          # the sync part alone: sync_users_per_s, peak_mb
    uv run python benchmarks/smime.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

With --database-url (a PostgreSQL server's admin URL) a throwaway database is created on that server and dropped
afterwards; `database` in the line says which one was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_loop(connector_id: int, emails: list[str], key: str, out: Path) -> float:
    """Key, CSR, issue, PKCS#12 to a file per user: no Prefect, no database writes. Returns users/s."""
    from certfleet.connectors.base import IssueRequest, Profile
    from certfleet.models import repo
    from certfleet.models.db import session_scope
    from certfleet.models.orm import CAConnector
    from certfleet.pki.bundle import to_pkcs12
    from certfleet.pki.csr import build_csr, csr_to_pem
    from certfleet.pki.keys import KeySpec, generate_private_key
    from certfleet.pki.parse import load_material
    from certfleet.tasks.build import build_ca

    spec = KeySpec.parse(key)
    with session_scope() as s:
        ca = build_ca(s, repo.get(s, CAConnector, connector_id))
        t0 = time.perf_counter()
        for n, email in enumerate(emails):
            private = generate_private_key(spec)
            csr = csr_to_pem(build_csr(private, email, [email]))
            issued = ca.issue(IssueRequest(csr_pem=csr, profile=Profile.SMIME, idempotency_key=f"bare-{n}"))
            assert issued.pem_chain is not None
            certs = load_material(issued.pem_chain.encode()).certificates
            (out / f"{email}.p12").write_bytes(to_pkcs12(private, certs, secrets.token_urlsafe(18).encode()))
        return len(emails) / (time.perf_counter() - t0)


@contextmanager
def throwaway_database(admin_url: str | None) -> Iterator[None]:
    """A fresh PostgreSQL database on `admin_url`'s server as CERTFLEET_DATABASE_URL, dropped afterwards; no-op
    without a URL (SQLite in the data directory)."""
    if not admin_url:
        os.environ.pop("CERTFLEET_DATABASE_URL", None)
        yield
        return
    from sqlalchemy import create_engine, make_url, text

    name = f"certfleet_bench_smime_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    os.environ["CERTFLEET_DATABASE_URL"] = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield
    finally:
        from certfleet.models.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sync-users", type=int, default=10_000)
    parser.add_argument("--rollout-users", type=int, default=1_000)
    parser.add_argument("--key", choices=["rsa2048", "p256"], default="rsa2048")
    parser.add_argument("--sync-only", action="store_true", help="measure the directory sync only (no rollout)")
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a throwaway database is made on it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-smime-"))
    os.environ["CERTFLEET_DATA_DIR"] = str(work / "data")
    with throwaway_database(args.database_url):
        run(args, work)


def run(args: argparse.Namespace, work: Path) -> None:
    from certfleet.settings import get_settings

    get_settings.cache_clear()  # the data directory and database chosen above, whatever was imported before
    database = "postgresql" if args.database_url else "sqlite"

    from prefect.testing.utilities import prefect_test_harness

    from certfleet.flows.smime import smime_rollout, sync_directory
    from certfleet.models.bootstrap import initialize
    from certfleet.models.db import migrate, session_scope
    from certfleet.models.orm import SmimeUser
    from certfleet.smime import service
    from tests.emulators.azure_ad import AzureADEmulator, make_user
    from tests.emulators.pki import TlsIdentity

    migrate()
    boot = initialize()
    emulator = AzureADEmulator(TlsIdentity(work / "tls"))
    emulator.users = [make_user(n) for n in range(args.sync_users)]
    emulator.start()
    try:
        with session_scope() as s:
            profile_id = service.save_profile(
                s,
                service.ProfileFields(
                    emulator.client_id,
                    emulator.client_secret,
                    emulator.tenant_id,
                    "Benchmark tenant",
                    authority_host=emulator.authority_host,
                    graph_base=emulator.graph_base,
                    ca_bundle_pem=emulator.tls.ca_pem,
                ),
                "bench",
            ).id
        with prefect_test_harness(server_startup_timeout=120):
            # Warm-up: a rollout run with no users, so the timed sync does not pay the test server's first flow
            # run (flow registration, the server's first writes), a one-off cost of the harness, not of the sync.
            smime_rollout(user_ids=[], delivery_dir=str(work / "warm-up"), key=args.key)
            t0 = time.perf_counter()
            report = sync_directory(profile_id)[str(profile_id)]
            sync_s = time.perf_counter() - t0
            assert report["added"] == args.sync_users, report
            if args.sync_only:
                print(json.dumps({
                    "database": database,
                    "sync_users": args.sync_users,
                    "sync_users_per_s": round(args.sync_users / sync_s, 1),
                    "peak_mb": round(peak_mb(), 1),
                }))  # fmt: skip
                return
            with session_scope() as s:
                chosen = list(s.query(SmimeUser.id, SmimeUser.email).order_by(SmimeUser.id).limit(args.rollout_users))
            user_ids = [i for i, _ in chosen]
            delivery = work / "delivery"
            t0 = time.perf_counter()
            outcome = smime_rollout(user_ids=user_ids, delivery_dir=str(delivery), key=args.key)
            rollout_s = time.perf_counter() - t0
            assert len(outcome) == len(user_ids)
        bare_dir = work / "bare"
        bare_dir.mkdir()
        bare = bare_loop(boot.ca_connector_id, [e for _, e in chosen], args.key, bare_dir)
    finally:
        emulator.stop()
    rollout = len(user_ids) / rollout_s
    print(json.dumps({
        "database": database,
        "key": args.key,
        "sync_users": args.sync_users,
        "sync_users_per_s": round(args.sync_users / sync_s, 1),
        "rollout_users": len(user_ids),
        "rollout_users_per_s": round(rollout, 2),
        "bare_users_per_s": round(bare, 2),
        "ratio": round(rollout / bare, 3),
        "peak_mb": round(peak_mb(), 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()

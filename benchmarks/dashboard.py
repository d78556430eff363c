"""Dashboard and API speed at fleet scale: 100,000 certificates, 2,000 bots, 5,000 servers.

Prints one JSON line: dashboard_p95_ms (the Provisioning Dashboard page), list_p95_ms (a filtered certificate
list page), api_p95_ms (the same list through /api/v1), export_s and export_peak_mb (a 100,000-row Excel export,
measured in a child process so its peak memory is the export's own), and database.

    uv run python benchmarks/dashboard.py                                  # SQLite in a temporary directory
    uv run python benchmarks/dashboard.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

With --database-url a throwaway database is created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIST_FILTER = ["status:eq:Deployed", "common_name:contains:web"]


def p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20)[18], 1) if len(samples) >= 2 else round(samples[0], 1)


def seed(certificates: int, bots: int, servers: int) -> None:
    from sqlalchemy import insert, select

    from certfleet.dashboard.services.users import ensure_first_admin
    from certfleet.models.bootstrap import initialize
    from certfleet.models.db import session_scope
    from certfleet.models.orm import (
        Bot,
        BotPurpose,
        BotStatus,
        CAConnector,
        CAType,
        Certificate,
        CertificateStatus,
        Server,
        ServerConnection,
        ServerStatus,
    )

    boot = initialize()
    rnd = random.Random(7)
    now = datetime.now(UTC)
    with session_scope() as s:
        ensure_first_admin(s, "benchmark-password")
        s.execute(
            insert(Bot),
            [
                {
                    "name": f"bot-{i:05d}",
                    "ip_address": f"10.{i // 250}.{i % 250}.1",
                    "status": rnd.choice(list(BotStatus)),
                    "purpose": rnd.choice(list(BotPurpose)),
                    "group_name": rnd.choice(["web", "db", "edge", "core"]),
                    "version": "1.4.0",
                    "last_update": now - timedelta(minutes=rnd.randint(0, 10000)),
                    "work_queue": f"bot-{i:05d}",
                    "tags": [f"region={rnd.choice(['eu', 'us', 'ap'])}"],
                    "created_at": now - timedelta(days=rnd.randint(0, 400)),
                    "created_by": "bench",
                }
                for i in range(bots)
            ],
        )
        bot_ids = list(s.scalars(select(Bot.id)))
        s.execute(
            insert(Server),
            [
                {
                    "description": f"server-{i:05d}",
                    "host": f"172.16.{i // 250}.{i % 250}",
                    "ports": [443],
                    "connection": ServerConnection.SSH,
                    "server_type": rnd.choice(["nginx", "apache", "tomcat", "jetty"]),
                    "username": "deploy",
                    "bot_id": rnd.choice(bot_ids) if i % 3 else None,
                    "status": rnd.choice(list(ServerStatus)),
                    "ssh_port": 22,
                    "use_sudo": False,
                    "created_at": now,
                }
                for i in range(servers)
            ],
        )
        ca = s.get(CAConnector, boot.ca_connector_id)
        assert ca is not None
        batch = 10_000
        for start in range(0, certificates, batch):
            s.execute(
                insert(Certificate),
                [
                    {
                        "common_name": f"{rnd.choice(['web', 'api', 'mail', 'vpn'])}{i}.example.com",
                        "sans": [f"host{i}.example.com"],
                        "status": rnd.choice(list(CertificateStatus)),
                        "discovery_bot_id": rnd.choice(bot_ids),
                        "provisioning_bot_id": rnd.choice(bot_ids) if i % 4 else None,
                        "ca_connector_id": ca.id if i % 5 else None,
                        "issuer_ca": "Built-in CA",
                        "ca_type": CAType.PRIVATE,
                        "signature_algorithm": "SHA256RSA",
                        "serial_number": f"{i:032x}",
                        "expires_on": now + timedelta(days=rnd.randint(-30, 398)),
                        "issued_on": now - timedelta(days=rnd.randint(0, 300)),
                        "location_host": f"host{i}.example.com",
                        "location_port": 443,
                        "organization": "Example Ltd",
                        "tags": [f"team={rnd.choice(['a', 'b', 'c'])}"],
                        "batch_name": f"batch-{i % 50}",
                        "vulnerable": i % 17 == 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + batch, certificates))
                ],
            )


def measure(requests: int) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from certfleet.dashboard.app import create_app
    from certfleet.dashboard.services.users import create_api_token
    from certfleet.models.db import session_scope
    from certfleet.models.orm import User

    with session_scope() as s:
        admin = s.query(User).filter_by(username="admin").one()
        token = create_api_token(s, admin.id, "bench", "bench").token
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    client.post("/login", data={"username": "admin", "password": "benchmark-password",
                                "csrf_token": _csrf(client)})  # fmt: skip
    rnd = random.Random(3)

    def timed(fn: object, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            response = fn()  # type: ignore[operator]
            out.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.text[:300]
        return out

    timed(lambda: client.get("/"), 2)  # warm caches, templates, connection pool
    dashboard = timed(lambda: client.get("/"), requests)
    pages = lambda: {"filter": LIST_FILTER, "page": rnd.randint(1, 20)}  # noqa: E731
    listing = timed(lambda: client.get("/certificates", params=pages()), requests)
    api = timed(
        lambda: client.get("/api/v1/certificates", params=pages(), headers={"Authorization": f"Bearer {token}"}),
        requests,
    )
    return {"dashboard_p95_ms": p95(dashboard), "list_p95_ms": p95(listing), "api_p95_ms": p95(api),
            "_token": token}  # type: ignore[dict-item]  # fmt: skip


def _csrf(client: object) -> str:
    import re

    html = client.get("/login").text  # type: ignore[attr-defined]
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert match
    return match.group(1)


def export_child(token: str) -> None:
    """Runs in a child process: one full Excel export through the API; prints seconds and rows."""
    import io

    from fastapi.testclient import TestClient

    from certfleet.dashboard.app import create_app

    client = TestClient(create_app(), base_url="http://127.0.0.1")
    t0 = time.perf_counter()
    size = 0
    with client.stream("GET", "/api/v1/certificates/export", params={"format": "xlsx"},
                       headers={"Authorization": f"Bearer {token}"}) as response:  # fmt: skip
        assert response.status_code == 200
        sink = io.BytesIO() if os.environ.get("BENCH_KEEP") else None
        for chunk in response.iter_bytes():
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    print(json.dumps({"export_s": round(time.perf_counter() - t0, 2), "bytes": size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a throwaway database is made on it")
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--bots", type=int, default=2_000)
    parser.add_argument("--servers", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--export-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(args.export_child)
        return

    data_dir = tempfile.mkdtemp(prefix="certfleet-bench-")
    os.environ["CERTFLEET_DATA_DIR"] = data_dir
    admin_url, db_url = args.database_url, None
    if admin_url:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"certfleet_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        os.environ["CERTFLEET_DATABASE_URL"] = db_url
    try:
        t0 = time.perf_counter()
        seed(args.certificates, args.bots, args.servers)
        seeded_s = time.perf_counter() - t0
        result = measure(args.requests)
        token = str(result.pop("_token"))
        child = subprocess.run(
            [sys.executable, __file__, "--export-child", token],
            capture_output=True, text=True, env=os.environ.copy(), check=True,
        )  # fmt: skip
        exported = json.loads(child.stdout.strip().splitlines()[-1])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    **result,
                    "export_s": exported["export_s"],
                    "export_peak_mb": round(peak_mb, 1),
                    "export_bytes": exported["bytes"],
                    "database": "postgresql" if admin_url else "sqlite",
                    "certificates": args.certificates,
                    "bots": args.bots,
                    "servers": args.servers,
                    "requests": args.requests,
                    "seed_s": round(seeded_s, 1),
                }
            )
        )
    finally:
        from certfleet.models.db import dispose_engines

        dispose_engines()
        if admin_url and db_url:
            from sqlalchemy import create_engine, text

            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[-1]}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

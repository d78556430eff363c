"""/metrics at fleet scale: 100,000 certificates (and 2,000 bots, 5,000 servers, as benchmarks/dashboard.py fills).

Prints one JSON line: scrape_s (one /metrics scrape with a Viewer-level API token, after one warm-up scrape),
scrape_mb (the peak memory the scrapes added to a fresh
process that has loaded the app, from its max RSS; the seeding runs in another process), series (samples in the answer),
body_kb and the cap used. Goal: under 1 s and under 100 MB.

    uv run python benchmarks/metrics.py                                  # SQLite in a temporary directory
    uv run python benchmarks/metrics.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_child() -> None:
    """Runs in a child process (so the seeding's memory is not counted): prints the measurement."""
    print(json.dumps(measure()))


def measure() -> dict[str, float]:
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from certfleet.dashboard.app import create_app
    from certfleet.dashboard.services.users import create_api_token
    from certfleet.models.db import session_scope
    from certfleet.models.orm import User
    from certfleet.settings import get_settings

    with session_scope() as s:
        admin = s.query(User).filter_by(username="admin").one()
        token = create_api_token(s, admin.id, "bench", "bench").token
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    headers = {"Authorization": f"Bearer {token}"}
    client.get("/healthz")
    base_mb = rss_mb()
    assert client.get("/metrics", headers=headers).status_code == 200  # warm-up: imports, connection, caches
    t0 = time.perf_counter()
    response = client.get("/metrics", headers=headers)
    scrape_s = time.perf_counter() - t0
    assert response.status_code == 200, response.text[:300]
    series = sum(len(f.samples) for f in text_string_to_metric_families(response.text))
    return {"scrape_s": round(scrape_s, 3), "scrape_mb": round(rss_mb() - base_mb, 1), "series": series,
            "body_kb": round(len(response.content) / 1024), "cap": get_settings().metrics_max_certificates}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; a throwaway database is made on it")
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--bots", type=int, default=2_000)
    parser.add_argument("--servers", type=int, default=5_000)
    parser.add_argument("--measure-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_child:
        measure_child()
        return

    os.environ["CERTFLEET_DATA_DIR"] = tempfile.mkdtemp(prefix="certfleet-bench-")
    admin_url, db_url = args.database_url, None
    if admin_url:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"certfleet_bench_{uuid.uuid4().hex[:8]}"
        with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        os.environ["CERTFLEET_DATABASE_URL"] = db_url
    try:
        from dashboard import seed  # benchmarks/dashboard.py: the same fleet, inserted in batches

        seed(args.certificates, args.bots, args.servers)
        from certfleet.models.db import dispose_engines

        dispose_engines()
        child = subprocess.run([sys.executable, __file__, "--measure-child"], capture_output=True, text=True,
                               env=os.environ.copy(), check=True)  # fmt: skip
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps({**result, "database": "postgresql" if admin_url else "sqlite",
                          "certificates": args.certificates, "bots": args.bots}))  # fmt: skip
    finally:
        from certfleet.models.db import dispose_engines

        dispose_engines()
        if admin_url and db_url:
            from sqlalchemy import create_engine, text

            with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[-1]}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

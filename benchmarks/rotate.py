"""rotate-batch throughput against local TLS listeners (built-in CA, EC P-256), in one process.

Registers `--certs` demo listeners (each its own local-agent server with one certificate and target, as the demo
fleet does), then times one real `rotate-batch` run over all of them (canary, then the rest; new key, order to the
built-in CA, journalled install, config test, reload, TLS proof) against Prefect's test server on SQLite.

Prints one JSON line: certs, servers, seconds, certfleet_cps (certificates rotated per second), peak_mb (max RSS
of this process). Not measured here: the issue's bare-loop comparison (`bare_cps`, `ratio`) and 20 servers
sharing 1,000 certificates.

    uv run python benchmarks/rotate.py --certs 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=20, help="certificates, one listener and server each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-rotate-") as tmp:
        os.environ["CERTFLEET_DATA_DIR"] = str(Path(tmp) / "data")
        os.environ.pop("CERTFLEET_DATABASE_URL", None)
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        print(json.dumps(run(Path(tmp), args.certs)))


def run(root: Path, certs: int) -> dict[str, float | int]:
    from prefect.events.clients import NullEventsClient
    from prefect.events.worker import EventsWorker
    from prefect.testing.utilities import prefect_test_harness

    from certfleet.demo.fleet import plan_fleet, register_fleet
    from certfleet.deployments.api import skip_unused_trust_file
    from certfleet.flows.rotation import rotate_batch
    from certfleet.models.bootstrap import initialize

    skip_unused_trust_file()  # Prefect's test server is plain HTTP
    EventsWorker.set_client_override(NullEventsClient)  # nothing reads events; a stopped server's queue would hang exit
    boot = initialize()
    hosts = plan_fleet(root / "fleet", certs)
    register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    listeners = [h.listener() for h in hosts]
    try:
        for listener in listeners:
            listener.launch()
        with prefect_test_harness(server_startup_timeout=120):
            t0 = time.perf_counter()
            counts = rotate_batch(batch_name="demo", batch_key="bench", failure_budget=0.0)
            seconds = time.perf_counter() - t0
    finally:
        for listener in listeners:
            listener.stop()
    if counts["done"] != certs:
        raise SystemExit(f"only {counts['done']} of {certs} certificates were rotated: {counts}")
    return {
        "certs": certs,
        "servers": certs,
        "seconds": round(seconds, 2),
        "certfleet_cps": round(certs / seconds, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()

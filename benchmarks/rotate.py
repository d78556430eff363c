"""rotate-batch throughput against local TLS listeners (built-in CA, EC P-256), in one process.

Registers `--certs` demo listeners (each its own local-agent server with one certificate and target, as the demo
fleet does), then times one real `rotate-batch` run over all of them (canary, then the rest; new key, order to the
built-in CA, journalled install, config test, reload, TLS proof) against Prefect's test server on SQLite.

Then, on the same listeners, the same crypto and file work in a bare Python loop without Prefect (key, CSR, the
built-in CA's signature, atomic file writes, the listener's config test and reload, a TLS proof), with as many
threads as rotate-batch runs servers at once.

Prints one JSON line: certs, servers, seconds, certfleet_cps (certificates rotated per second), bare_s, bare_cps,
ratio (bare time / certfleet time: 1.0 means no overhead), peak_mb (max RSS of this process). Not measured here:
20 servers sharing 1,000 certificates.

    uv run python benchmarks/rotate.py --certs 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from certfleet.demo.fleet import DemoHost
    from certfleet.demo.listener import ListenerProcess
    from certfleet.models.bootstrap import Bootstrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=20, help="certificates, one listener and server each")
    parser.add_argument("--ca-concurrency", type=int, default=4, help="rotate-batch's ca_concurrency (its default: 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-rotate-") as tmp:
        isolate(Path(tmp))
        print(json.dumps(run(Path(tmp), args.certs, args.ca_concurrency)))


def isolate(root: Path) -> None:
    """This process's certfleet data (SQLite) under `root`, Prefect quiet; call before importing certfleet."""
    os.environ["CERTFLEET_DATA_DIR"] = str(root / "data")
    os.environ.pop("CERTFLEET_DATABASE_URL", None)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"


def bootstrap() -> Bootstrapped:
    """The database and its built-in CA and local bot, with Prefect's clients set for a plain-HTTP test server."""
    from prefect.events.clients import NullEventsClient
    from prefect.events.worker import EventsWorker

    from certfleet.deployments.api import skip_unused_trust_file
    from certfleet.models.bootstrap import initialize

    skip_unused_trust_file()  # Prefect's test server is plain HTTP
    EventsWorker.set_client_override(NullEventsClient)  # nothing reads events; a stopped server's queue would hang exit
    return initialize()


@contextlib.contextmanager
def serving(hosts: list[DemoHost]) -> Iterator[list[ListenerProcess]]:
    """The hosts' TLS listeners, running until the block ends."""
    listeners = [h.listener() for h in hosts]
    try:
        for listener in listeners:
            listener.launch()
        yield listeners
    finally:
        for listener in listeners:
            listener.stop()


def timed_rotate_batch(certs: int, **params: Any) -> float:
    """One real rotate-batch over the Batch Name `demo` against Prefect's test server; its seconds. Exits unless
    all `certs` certificates were rotated."""
    from prefect.testing.utilities import prefect_test_harness

    from certfleet.flows.rotation import rotate_batch

    with prefect_test_harness(server_startup_timeout=120):
        t0 = time.perf_counter()
        counts = rotate_batch(batch_name="demo", batch_key="bench", failure_budget=0.0, **params)
        seconds = time.perf_counter() - t0
    if counts["done"] != certs:
        raise SystemExit(f"only {counts['done']} of {certs} certificates were rotated: {counts}")
    return seconds


def bare_rotate(connector_id: int, host: DemoHost, listener: ListenerProcess) -> None:
    """The same crypto and file work without Prefect, journal or database records: key, CSR, the built-in CA's
    signature, files written atomically (key 0600), the listener's config test and reload, a TLS proof."""
    from certfleet.connectors.base import IssueRequest
    from certfleet.connectors.servers.probe import wait_for_serial
    from certfleet.models.db import session_scope
    from certfleet.models.orm import CAConnector
    from certfleet.pki.csr import build_csr, csr_to_pem
    from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem
    from certfleet.pki.parse import load_material
    from certfleet.tasks.build import build_ca

    key = generate_private_key(KeySpec.parse("ec-p256"))
    csr = csr_to_pem(build_csr(key, host.fqdn, [host.fqdn]))
    with session_scope() as s:
        ca = build_ca(s, s.get_one(CAConnector, connector_id))
        issued = ca.issue(IssueRequest(csr_pem=csr, validity_days=30, idempotency_key=f"bare-{host.name}"))
    assert issued.pem_chain is not None
    chain = load_material(issued.pem_chain.encode()).certificates
    served = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain[:-1])
    for path, data, mode in ((host.key_path, private_key_to_pem(key), 0o600), (host.cert_path, served.encode(), 0o644)):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    subprocess.run(listener.check_command(), check=True, capture_output=True, timeout=60)
    subprocess.run(listener.reload_command(), check=True, capture_output=True, timeout=60)
    wait_for_serial("127.0.0.1", host.port, server_name=host.fqdn, expected_serial=chain[0].serial_number)


def run(root: Path, certs: int, ca_concurrency: int) -> dict[str, float | int]:
    from certfleet.demo.fleet import plan_fleet, register_fleet
    from certfleet.flows.rotation import PARALLEL_SERVERS

    boot = bootstrap()
    hosts = plan_fleet(root / "fleet", certs)
    register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    with serving(hosts) as listeners:
        seconds = timed_rotate_batch(certs, ca_concurrency=ca_concurrency)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=PARALLEL_SERVERS) as pool:  # as many at once as rotate-batch runs
            list(pool.map(lambda pair: bare_rotate(boot.ca_connector_id, *pair), zip(hosts, listeners, strict=True)))
        bare_seconds = time.perf_counter() - t0
    return {
        "certs": certs,
        "servers": certs,
        "ca_concurrency": ca_concurrency,
        "seconds": round(seconds, 2),
        "certfleet_cps": round(certs / seconds, 2),
        "bare_s": round(bare_seconds, 2),
        "bare_cps": round(certs / bare_seconds, 2),
        "ratio": round(bare_seconds / seconds, 3),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()

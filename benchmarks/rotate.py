"""rotate-batch throughput against local TLS listeners (built-in CA, EC P-256), in one process.

Registers `--servers` local-agent servers, each a demo TLS listener serving its share of `--certs` sites by SNI
(`--sites`, like a web server with many server blocks), one certificate and target per site; then times one real
`rotate-batch` run over all of them (canary, then the rest; new key, order to the built-in CA, journalled install,
the server's config test, reload, TLS proof) against Prefect's test server on SQLite.

Then, on the same listeners, the same crypto and file work in a bare Python loop without Prefect (key, CSR, the
built-in CA's signature, atomic and durable file writes (fsync, rename, directory fsync, as certfleet writes them;
without certfleet's backups), the listener's config test and reload once per group of certificates
of a server, as rotate-batch groups them, a TLS proof per certificate), one thread per server for as many servers
at once as rotate-batch runs.

Prints one JSON line: certs, servers, seconds, certfleet_cps (certificates rotated per second), bare_s, bare_cps,
ratio (bare time / certfleet time: 1.0 means no overhead), peak_mb (max RSS of this process, the Prefect test
server excluded: it runs in its own process), rss_after_plan_mb and rss_end_mb.

    uv run python benchmarks/rotate.py --certs 1000 --servers 20
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certfleet.demo.listener import SITE_CERT, SITE_KEY, ListenerProcess, free_port  # noqa: E402 (after sys.path)

if TYPE_CHECKING:
    from certfleet.connectors.base import CertificateAuthority
    from certfleet.demo.fleet import DemoHost
    from certfleet.models.bootstrap import Bootstrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=20, help="certificates, one site (target) each")
    parser.add_argument("--servers", type=int, default=20, help="servers (listeners) sharing the certificates")
    parser.add_argument("--ca-concurrency", type=int, default=4, help="rotate-batch's ca_concurrency (its default: 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-rotate-") as tmp:
        isolate(Path(tmp))
        print(json.dumps(run(Path(tmp), args.certs, min(args.servers, args.certs), args.ca_concurrency)))


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


def timed_rotate_batch(certs: int, batch_name: str = "demo", **params: Any) -> float:
    """One real rotate-batch over the Batch Name against Prefect's test server; its seconds. Exits unless all
    `certs` certificates were rotated."""
    from prefect.testing.utilities import prefect_test_harness

    from certfleet.flows.rotation import rotate_batch

    with prefect_test_harness(server_startup_timeout=120):
        t0 = time.perf_counter()
        counts = rotate_batch(batch_name=batch_name, batch_key="bench", failure_budget=0.0, **params)
        seconds = time.perf_counter() - t0
    if counts["done"] != certs:
        raise SystemExit(f"only {counts['done']} of {certs} certificates were rotated: {counts}")
    return seconds


@dataclass(frozen=True)
class Site:
    """One certificate: a site (server name) of one listener, its files in sites/<name>/."""

    fqdn: str
    server: int  # index into the listeners
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / SITE_CERT

    @property
    def key_path(self) -> Path:
        return self.directory / SITE_KEY


def plan_sites(root: Path, certs: int, servers: int) -> tuple[list[ListenerProcess], list[Site]]:
    """`servers` listeners on free ports, the certificates spread over them, each site with a placeholder."""
    from certfleet.demo.fleet import DEMO_DOMAIN, placeholder_certificate

    listeners = []
    for k in range(servers):
        sites_dir = root / f"server-{k}" / "sites"
        sites_dir.mkdir(parents=True)
        listeners.append(ListenerProcess.for_sites("127.0.0.1", free_port(), sites_dir, workdir=root / f"server-{k}"))
    sites = []
    for n in range(certs):
        server = n % servers
        fqdn = f"site-{n}.{DEMO_DOMAIN}"
        home = listeners[server].sites_dir
        assert home is not None
        site = Site(fqdn, server, home / fqdn)
        site.directory.mkdir()
        cert_pem, key_pem = placeholder_certificate(fqdn)
        site.cert_path.write_bytes(cert_pem)
        site.key_path.touch(mode=0o600)
        site.key_path.write_bytes(key_pem)
        sites.append(site)
    return listeners, sites


def register(listeners: list[ListenerProcess], sites: list[Site], *, ca_connector_id: int, bot_id: int) -> None:
    """One local-agent server per listener, one certificate and target per site (committed in parts)."""
    from certfleet.demo.fleet import listener_server
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Certificate, DeploymentTarget
    from certfleet.servers.service import check_connectivity

    server_ids = []
    with session_scope() as s:
        for k, listener in enumerate(listeners):
            server = listener_server(listener, description=f"bench server {k}", bot_id=bot_id, created_by="benchmark")
            s.add(server)
            s.flush()
            server_ids.append(server.id)
    for first in range(0, len(sites), 500):
        with session_scope() as s:
            for site in sites[first : first + 500]:
                cert = Certificate(
                    common_name=site.fqdn,
                    sans=[site.fqdn],
                    ca_connector_id=ca_connector_id,
                    provisioning_bot_id=bot_id,
                    key_spec="ec-p256",
                    validity_days=30,
                    batch_name="bench",
                )
                cert.targets.append(
                    DeploymentTarget(
                        server_id=server_ids[site.server],
                        port=listeners[site.server].port,
                        server_name=site.fqdn,
                        cert_path=str(site.cert_path),
                        key_path=str(site.key_path),
                    )
                )
                s.add(cert)
    for server_id in server_ids:
        result = check_connectivity(server_id, actor="benchmark")
        if result.reason is not None:
            raise RuntimeError(f"server {server_id} is not ready: {result.reason}")


def bare_server(connector_id: int, listener: ListenerProcess, sites: list[Site]) -> None:
    """One server's sites a group at a time, as rotate-batch's per-server task takes them: each site's files
    written, then the listener's config test and reload once for the group, then each site proven served."""
    from certfleet.connectors.servers.probe import wait_for_serial
    from certfleet.models.db import session_scope
    from certfleet.models.orm import CAConnector
    from certfleet.tasks.build import build_ca
    from certfleet.tasks.deploy_group import GROUP

    with session_scope() as s:
        ca = build_ca(s, s.get_one(CAConnector, connector_id))
    for first in range(0, len(sites), GROUP):
        group = sites[first : first + GROUP]
        serials = [bare_install(ca, site) for site in group]
        subprocess.run(listener.control_check_command(), check=True, capture_output=True, timeout=60)
        subprocess.run(listener.control_reload_command(), check=True, capture_output=True, timeout=60)
        for site, serial in zip(group, serials, strict=True):
            wait_for_serial("127.0.0.1", listener.port, server_name=site.fqdn, expected_serial=serial)


def bare_install(ca: CertificateAuthority, site: Site) -> int:
    """The same crypto and file work without Prefect, journal or database records: key, CSR, the built-in CA's
    signature, files written atomically and durably (key 0600). Returns the new serial."""
    from certfleet.connectors.base import IssueRequest
    from certfleet.pki.csr import build_csr, csr_to_pem
    from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem
    from certfleet.pki.parse import load_material

    key = generate_private_key(KeySpec.parse("ec-p256"))
    csr = csr_to_pem(build_csr(key, site.fqdn, [site.fqdn]))
    issued = ca.issue(IssueRequest(csr_pem=csr, validity_days=30, idempotency_key=f"bare-{site.fqdn}"))
    assert issued.pem_chain is not None
    chain = load_material(issued.pem_chain.encode()).certificates
    served = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain[:-1])
    for path, data, mode in ((site.key_path, private_key_to_pem(key), 0o600), (site.cert_path, served.encode(), 0o644)):
        # Written as certfleet writes a file on a server: temp file, fsync, rename, directory fsync (a certificate
        # and key that a power cut can lose or tear are not installed). certfleet also backs each file up first.
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return int(chain[0].serial_number)


def rss_mb() -> float:
    return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def run(root: Path, certs: int, servers: int, ca_concurrency: int) -> dict[str, float | int]:
    from prefect.testing.utilities import prefect_test_harness

    from certfleet.flows.rotation import PARALLEL_SERVERS, rotate_batch

    boot = bootstrap()
    listeners, sites = plan_sites(root / "fleet", certs, servers)
    try:
        for listener in listeners:
            listener.launch(ready_timeout=120)
        register(listeners, sites, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
        rss_before = rss_mb()
        with prefect_test_harness(server_startup_timeout=120):
            t0 = time.perf_counter()
            counts = rotate_batch(
                batch_name="bench", batch_key="bench", failure_budget=0.0, ca_concurrency=ca_concurrency
            )
            seconds = time.perf_counter() - t0
        rss_after = rss_mb()
        per_server: list[list[Site]] = [[] for _ in listeners]
        for site in sites:
            per_server[site.server].append(site)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=PARALLEL_SERVERS) as pool:  # as many servers at once as rotate-batch
            futures = [
                pool.submit(bare_server, boot.ca_connector_id, listener, group)
                for listener, group in zip(listeners, per_server, strict=True)
            ]
            for future in futures:
                future.result()
        bare_seconds = time.perf_counter() - t0
    finally:
        for listener in listeners:
            listener.stop()
    if counts["done"] != certs:
        raise SystemExit(f"only {counts['done']} of {certs} certificates were rotated: {counts}")
    return {
        "certs": certs,
        "servers": servers,
        "ca_concurrency": ca_concurrency,
        "seconds": round(seconds, 2),
        "certfleet_cps": round(certs / seconds, 2),
        "bare_s": round(bare_seconds, 2),
        "bare_cps": round(certs / bare_seconds, 2),
        "ratio": round(bare_seconds / seconds, 3),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": rss_before,
        "rss_after_batch_mb": rss_after,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    main()

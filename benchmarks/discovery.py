"""Discovery speed: certfleet's discover-endpoints flow vs nmap's ssl-cert script vs a bare asyncio loop.

Starts N TLS listeners on 127.0.0.1 (default 1,000, every listener with its own certificate and the
intermediate, EC P-256): nginx with one server block per port when nginx is installed (what the reference
numbers in the issue were measured against; about 0.45 ms of server CPU per handshake), else certfleet's
Python testbed (`--server python`: ten asyncio processes of a hundred sockets, about 0.85 ms per handshake).
Then it scans all of them three ways, interleaved, `--repeat` times, and prints one JSON line with medians:

- certfleet: `discover_endpoints` run as a Prefect flow (a test Prefect server on SQLite, certfleet's own
  SQLite database, fresh for every repetition), recording every chain, certificate and location;
- nmap: `nmap -n -Pn --script ssl-cert -p <ports> 127.0.0.1` (port scan, then one handshake per open port);
- raw: one asyncio loop that completes each handshake and keeps the leaf certificate, nothing else.

Rates are endpoints per second of wall time, start to end, each way including its own start-up work
(certfleet: creating the flow run, planning, the tasks, the final state; nmap: its process). Keys:
certfleet_eps, nmap_eps, raw_eps, vs_nmap = certfleet/nmap, vs_raw = certfleet/raw; the rest is context.

    uv run python benchmarks/discovery.py [--endpoints 1000] [--repeat 3] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.deployments.api import skip_unused_trust_file
from certfleet.discovery.fdlimit import raise_fd_limit
from certfleet.discovery.testbed import ListenerSpec, TlsFarm

skip_unused_trust_file()  # before Prefect is imported: its test server is plain HTTP, like `certfleet up`'s


def make_certificates(directory: Path, count: int, distinct: int) -> list[ListenerSpec]:
    """`distinct` leaf certificates (served round-robin by `count` listeners) under one intermediate."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Benchmark Issuing CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = directory / "leaf.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    files = []
    for n in range(distinct):
        name = f"host{n}.bench.certfleet.test"
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(1000 + n)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        path = directory / f"leaf{n}.pem"
        path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca_pem)
        files.append(str(path))
    return [ListenerSpec(files[n % distinct], str(key_file)) for n in range(count)]


def contiguous_ports(count: int, start: int = 20000, end: int = 32768) -> int | None:
    """A base port with `count` free ports after it, so the scan target is a port range like users type.

    Below Linux's ephemeral range (32768+), so no client connection of the scan can be using one."""
    base = start
    while base + count <= end:
        taken = None
        for port in range(base, base + count):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = port
                    break
        if taken is None:
            return base
        base = taken + 1
    return None


class NginxFarm:
    """nginx serving every spec on its port, one worker process (two cores are shared with the scanners)."""

    def __init__(self, specs: list[ListenerSpec], workdir: Path) -> None:
        self.specs = specs
        self.workdir = workdir
        self.endpoints = [(spec.host, spec.port) for spec in specs]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NginxFarm:
        self.workdir.mkdir(parents=True, exist_ok=True)
        blocks = "\n".join(
            f"server {{ listen {s.host}:{s.port} ssl; ssl_certificate {s.cert_file}; "
            f"ssl_certificate_key {s.key_file}; return 204; }}"
            for s in self.specs
        )
        temp = " ".join(
            f"{name}_temp_path {self.workdir}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = self.workdir / "nginx.conf"
        config.write_text(
            f"worker_processes 1; daemon off; pid {self.workdir}/nginx.pid; error_log {self.workdir}/error.log;\n"
            f"worker_rlimit_nofile {len(self.specs) * 2 + 4096};\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; {temp}\n{blocks}\n}}\n"
        )
        log = self.workdir / "error.log"
        self.process = subprocess.Popen(
            ["nginx", "-c", str(config), "-p", str(self.workdir), "-e", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        last = self.specs[-1]
        while True:  # ready when the last port answers
            with socket.socket() as probe:
                if probe.connect_ex((last.host, last.port)) == 0:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {log.read_text(errors='replace') if log.exists() else ''}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the three ways ----------------------------------------------------------------------------------------


async def raw_scan(ports: list[int], concurrency: int) -> int:
    """The bare method: handshake, keep the leaf's DER, close. One loop, `concurrency` in flight."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    kept: list[bytes] = []
    pending = iter(ports)

    async def worker() -> None:
        for port in pending:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", port))
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = context.wrap_bio(incoming, outgoing)
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        data = outgoing.read()
                        if data:
                            await loop.sock_sendall(sock, data)
                        data = await loop.sock_recv(sock, 65536)
                        if not data:
                            raise ConnectionResetError from None
                        incoming.write(data)
                der = tls.getpeercert(binary_form=True)
                if der:
                    kept.append(der)
            except OSError:
                pass
            finally:
                sock.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(ports)))))
    return len(kept)


def nmap_scan(ports: list[int], port_spec: str) -> int:
    out = subprocess.run(
        ["nmap", "-n", "-Pn", "--script", "ssl-cert", "-p", port_spec, "-oX", "-", "127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.count('<script id="ssl-cert"')


class Certfleet:
    """A fresh certfleet database per run; the Prefect test server for the whole benchmark."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = 0

    def fresh_database(self) -> None:
        from certfleet.models import db, encryption
        from certfleet.models.bootstrap import initialize
        from certfleet.settings import get_settings

        self.runs += 1
        os.environ["CERTFLEET_DATA_DIR"] = str(self.root / f"data-{self.runs}")
        get_settings.cache_clear()
        encryption.reset_sealer()
        db.dispose_engines()
        initialize()

    def scan(self, targets: list[str], port_spec: str, concurrency: int) -> dict[str, Any]:
        from certfleet.flows.discovery import discover_endpoints

        summary = asyncio.run(discover_endpoints(targets=targets, ports=port_spec, concurrency=concurrency))
        return summary.model_dump()

    def recorded(self) -> tuple[int, int]:
        from sqlalchemy import func, select

        from certfleet.models.db import session_scope
        from certfleet.models.orm import Certificate, CertificateLocation

        with session_scope() as s:
            return (
                int(s.scalar(select(func.count()).select_from(Certificate)) or 0),
                int(s.scalar(select(func.count()).select_from(CertificateLocation)) or 0),
            )


SETTLE_S = 2.0


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of `action`, after a pause: the Prefect test server files the events and logs of the last
    flow run in the background, and that work must not land on the next measurement (of any of the three)."""
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def sweep(concurrency: int) -> int:
    """A /16 with one open port per hundred hosts, all on loopback (127.1.0.0/16 is local on Linux).

    Closed loopback ports refuse at once, so this measures certfleet's own cost per endpoint (planning,
    batching, recording the misses); across a real network every silent host costs connect_timeout, so a
    /16 takes about silent_hosts x connect_timeout / concurrency (65,000 x 3 s / 1,024 = about 3 minutes).
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    raise_fd_limit(concurrency * 4 + 8192)
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="certfleet-sweep-") as tmp:
        root = Path(tmp)
        (root / "certs").mkdir()
        hosts = [f"127.1.{n // 256}.{n % 256}" for n in range(100, 65536, 100)]
        port = contiguous_ports(1) or 24443
        specs = make_certificates(root / "certs", len(hosts), len(hosts))
        specs = [
            ListenerSpec(s.cert_file, s.key_file, host=host, port=port) for s, host in zip(specs, hosts, strict=True)
        ]
        with TlsFarm(specs, root / "farm"), prefect_test_harness(server_startup_timeout=120):
            certfleet = Certfleet(root)
            certfleet.fresh_database()
            certfleet.scan([hosts[0]], str(port), 8)  # warm-up
            certfleet.fresh_database()
            seconds, summary = timed(lambda: certfleet.scan(["127.1.0.0/16"], str(port), concurrency))
            recorded = certfleet.recorded()
    line = {
        "sweep": "127.1.0.0/16",
        "endpoints": summary["endpoints"],
        "listeners": len(hosts),
        "answered": summary["answered"],
        "recorded": recorded,
        "certfleet_seconds": round(seconds, 2),
        "certfleet_eps": round(summary["endpoints"] / seconds, 1),
        "concurrency": concurrency,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(line))
    return 0 if summary["answered"] == len(hosts) and recorded == (len(hosts), len(hosts)) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=0, help="distinct certificates (default: one per endpoint)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto", help="what serves TLS")
    parser.add_argument(
        "--sweep", action="store_true", help="instead: certfleet alone on a /16 (127.1.0.0/16) with 1 host in 100 open"
    )
    args = parser.parse_args()
    if args.sweep:
        return sweep(args.concurrency)
    if shutil.which("nmap") is None:
        print("nmap is not installed: run scripts/install-system-packages.sh", file=sys.stderr)
        return 2
    count, distinct = args.endpoints, args.distinct or args.endpoints
    raise_fd_limit(count * 4 + 4096)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="certfleet-bench-") as tmp:
        root = Path(tmp)
        (root / "certs").mkdir()
        specs = make_certificates(root / "certs", count, distinct)
        server = args.server if args.server != "auto" else ("nginx" if shutil.which("nginx") else "python")
        base = contiguous_ports(count)
        if base is not None:
            specs = [ListenerSpec(s.cert_file, s.key_file, port=base + n) for n, s in enumerate(specs)]
        elif server == "nginx":
            print("no block of free ports for nginx; use --server python", file=sys.stderr)
            return 2
        listeners = NginxFarm(specs, root / "nginx") if server == "nginx" else TlsFarm(specs, root / "farm")
        with listeners as farm, prefect_test_harness(server_startup_timeout=120):
            ports = [port for _, port in farm.endpoints]
            port_spec = f"{base}-{base + count - 1}" if base is not None else ",".join(map(str, ports))
            certfleet = Certfleet(root)
            certfleet.fresh_database()
            certfleet.scan(["127.0.0.1"], str(ports[0]), 8)  # warm-up: imports, first flow run, trust store
            times: dict[str, list[float]] = {"raw": [], "nmap": [], "certfleet": [], "certfleet_rescan": []}
            checks: dict[str, Any] = {}
            for _ in range(args.repeat):
                seconds, got = timed(lambda: asyncio.run(raw_scan(ports, args.concurrency)))
                times["raw"].append(seconds)
                checks["raw_certificates"] = got
                seconds, got = timed(lambda: nmap_scan(ports, port_spec))
                times["nmap"].append(seconds)
                checks["nmap_certificates"] = got
                certfleet.fresh_database()
                seconds, got = timed(lambda: certfleet.scan(["127.0.0.1"], port_spec, args.concurrency))
                times["certfleet"].append(seconds)
                checks["certfleet_answered"] = got["answered"]
                checks["certfleet_recorded"] = certfleet.recorded()
                seconds, _ = timed(lambda: certfleet.scan(["127.0.0.1"], port_spec, args.concurrency))
                times["certfleet_rescan"].append(seconds)
    rate = {name: count / statistics.median(values) for name, values in times.items()}
    line = {
        "endpoints": count,
        "distinct_certificates": distinct,
        "certfleet_eps": round(rate["certfleet"], 1),
        "nmap_eps": round(rate["nmap"], 1),
        "raw_eps": round(rate["raw"], 1),
        "vs_nmap": round(rate["certfleet"] / rate["nmap"], 2),
        "vs_raw": round(rate["certfleet"] / rate["raw"], 2),
        "certfleet_rescan_eps": round(rate["certfleet_rescan"], 1),
        "seconds": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "server": server,
        "concurrency": args.concurrency,
        "checks": checks,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(line))
    ok = (
        checks.get("raw_certificates") == count
        and checks.get("nmap_certificates") == count
        and checks.get("certfleet_answered") == count
        and checks.get("certfleet_recorded") == (distinct, count)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""How long hostile inputs hold the process: big certificate files, big SAN lists, big discovery requests.

Prints one JSON line (milliseconds, best of 3):
- load_800_pem_ms: load_material on one PEM of 800 certificates shaped to be slow (a 400-deep chain of
  intermediates plus 399 leaves under its bottom); the old ordering took about 2 s here.
- refuse_8000_pem_ms: the same shape with 8,000 certificates, refused (over MAX_CHAIN_CERTIFICATES).
- order_8000_unbounded_ms: order_chain alone on those 8,000 with the bound lifted, to show the work is linear.
- sans_1000_ms / refuse_sans_100000_ms: the New Certificate SAN list at the limit, and 100,000 names refused.
- csr_1000_sans_ms: build_csr with 1,000 SANs.
- refuse_discovery_ms: a Discover request of 3,000 addresses times 3,000 SNI names, refused before multiplying.

    uv run python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from certfleet.dashboard.errors import InputError  # noqa: E402
from certfleet.dashboard.services import certificates as certificate_service  # noqa: E402
from certfleet.dashboard.services.inventory import DiscoverRequest, discovery_targets  # noqa: E402
from certfleet.pki import parse  # noqa: E402
from certfleet.pki.csr import build_csr  # noqa: E402
from certfleet.pki.errors import CertificateFormatError  # noqa: E402

KEY = ec.generate_private_key(ec.SECP256R1())


def best_ms(fn: Callable[[], object], n: int = 3) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return round(min(samples), 1)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(subject: str, issuer: str) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )


def hostile_certificates(n: int) -> list[x509.Certificate]:
    depth = n // 2
    chain = [_cert(f"ca{i}", f"ca{i + 1}") for i in range(depth)] + [_cert(f"ca{depth}", f"ca{depth}")]
    leaves = [_cert(f"leaf{i}", "ca0") for i in range(n - len(chain))]
    return leaves + chain[::-1]


def pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def refused(fn: Callable[[], object], *errors: type[Exception]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except errors:
            return
        raise SystemExit(f"{fn} was not refused")

    return run


def main() -> None:
    small, big = hostile_certificates(800), hostile_certificates(8000)
    small_pem, big_pem = pem(small), pem(big)
    results: dict[str, float | int] = {
        "load_800_pem_ms": best_ms(lambda: parse.load_material(small_pem)),
        "refuse_8000_pem_ms": best_ms(refused(lambda: parse.load_material(big_pem), CertificateFormatError)),
    }
    limit = parse.MAX_CHAIN_CERTIFICATES
    parse.MAX_CHAIN_CERTIFICATES = 10**6  # lifted for this one measurement only
    results["order_8000_unbounded_ms"] = best_ms(lambda: parse.order_chain(big))
    parse.MAX_CHAIN_CERTIFICATES = limit

    sans = [f"host{i}.example.test" for i in range(1000)]
    results["sans_1000_ms"] = best_ms(lambda: certificate_service._names(sans))
    many = [f"host{i}.example.test" for i in range(100_000)]
    results["refuse_sans_100000_ms"] = best_ms(refused(lambda: certificate_service._names(many), InputError))
    results["csr_1000_sans_ms"] = best_ms(lambda: build_csr(KEY, "host0.example.test", sans))

    addresses = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(1, 3001)]
    request = DiscoverRequest(targets=addresses, sni_names=[f"v{i}.example.test" for i in range(3000)])
    results["refuse_discovery_ms"] = best_ms(refused(lambda: discovery_targets(request), InputError))
    results["max_chain_certificates"] = limit
    print(json.dumps(results))


if __name__ == "__main__":
    main()

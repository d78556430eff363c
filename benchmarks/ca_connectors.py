"""CA connector speed: ACME issuance against Pebble (real http-01 validation), and a REST CA round trip.

Starts pebble-challtestsrv and Pebble on 127.0.0.1 (PEBBLE_VA_NOSLEEP=1), then issues `--count` certificates
one after another (EC P-256 keys, two names each) three ways and prints one JSON line:

- certfleet_acme_per_s: certfleet's AcmeCA (its 50 ms poll loop, http-01 answered by the bot's responder);
- library_acme_per_s: the `acme` library's own `poll_and_finalize` (1 s sleeps) with the same account
  and responder: what a straightforward integration would get;
- digicert_per_s: certfleet's DigiCert connector against the CertCentral emulator (immediate issuance).

    uv run python benchmarks/ca_connectors.py [--count 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from certfleet.ca_admin.forms import AcmeForm, AdvancedOptions, DigiCertForm  # noqa: E402
from certfleet.ca_admin.runtime import RuntimeHooks, build_remote_ca  # noqa: E402
from certfleet.connectors.base import IssueRequest  # noqa: E402
from certfleet.connectors.ca.acme import AcmeCA, MemoryAccountStore  # noqa: E402
from certfleet.connectors.ca.journal import MemoryOrderJournal  # noqa: E402
from certfleet.demo.listener import free_port  # noqa: E402
from certfleet.pki.csr import build_csr, csr_to_pem  # noqa: E402
from certfleet.pki.keys import KeySpec, generate_private_key  # noqa: E402
from tests.emulators.acme_env import ChallTestSrv, Pebble  # noqa: E402
from tests.emulators.digicert import DigiCertEmulator  # noqa: E402
from tests.emulators.fixtures import stored  # noqa: E402
from tests.emulators.pki import TlsIdentity  # noqa: E402


def _csr(name: str) -> str:
    key = generate_private_key(KeySpec.parse("ec-p256"))
    return csr_to_pem(build_csr(key, f"{name}.example.test", [f"{name}.example.test", f"www.{name}.example.test"]))


def _library_issue(ca: AcmeCA, csr_pem: str) -> None:
    """The library's own flow: new order, answer, poll_and_finalize (1 s between polls)."""
    client = ca.client()
    key = client.net.key
    assert key is not None
    orderr = client.new_order(csr_pem.encode())
    presented = []
    for authzr in orderr.authorizations:
        challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
        ca.solver.present("bench", authzr.body.identifier.value, challb.chall, key)
        presented.append((authzr.body.identifier.value, challb.chall))
        client.answer_challenge(challb, challb.chall.response(key))
    try:
        client.poll_and_finalize(orderr)
    finally:
        for domain, chall in presented:
            ca.solver.cleanup("bench", domain, chall, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-ca-"))
    tls = TlsIdentity(work / "tls")
    dns = ChallTestSrv(work / "challtestsrv").start()
    http_port = free_port()
    pebble = Pebble(work / "pebble", tls, f"127.0.0.1:{dns.dns_port}", http_port).start()
    digicert = DigiCertEmulator(tls).start()
    try:
        advanced = AdvancedOptions(tls_ca_bundle=tls.ca_pem)
        acme_form = AcmeForm(
            name="bench", directory_url=pebble.directory_url, http01_listen=f"127.0.0.1:{http_port}", advanced=advanced
        )
        store = MemoryAccountStore()
        ca = build_remote_ca(stored(acme_form), RuntimeHooks(acme_accounts=store))
        assert isinstance(ca, AcmeCA)
        ca.check_credentials()  # the account exists before timing starts
        csrs = [_csr(f"host-{n}") for n in range(args.count)]
        library_csrs = [_csr(f"lib-{n}") for n in range(args.count)]  # fresh names: no authorization to reuse

        start = time.perf_counter()
        for n, csr in enumerate(csrs):
            assert ca.issue(IssueRequest(csr_pem=csr, idempotency_key=f"c-{n}")).issued
        certfleet_s = time.perf_counter() - start

        start = time.perf_counter()
        for csr in library_csrs:
            _library_issue(ca, csr)
        library_s = time.perf_counter() - start

        dc_form = DigiCertForm(
            name="bench",
            api_base_url=digicert.base_url,
            api_key=SecretStr(digicert.api_key),
            organization_id=digicert.organization_id,
            advanced=advanced,
        )
        dc = build_remote_ca(stored(dc_form), RuntimeHooks(journal=MemoryOrderJournal()))
        start = time.perf_counter()
        for n, csr in enumerate(csrs):
            assert dc.issue(IssueRequest(csr_pem=csr, idempotency_key=f"d-{n}")).issued
        digicert_s = time.perf_counter() - start
    finally:
        digicert.stop()
        pebble.stop()
        dns.stop()
    print(
        json.dumps(
            {
                "count": args.count,
                "certfleet_acme_per_s": round(args.count / certfleet_s, 2),
                "library_acme_per_s": round(args.count / library_s, 2),
                "acme_speedup": round(library_s / certfleet_s, 1),
                "digicert_per_s": round(args.count / digicert_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

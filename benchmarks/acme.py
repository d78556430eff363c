"""ACME issuance three ways against one Pebble with http-01 validation on: certfleet, certbot, a bare loop.

Starts pebble-challtestsrv (every name resolves to 127.0.0.1) and Pebble on 127.0.0.1 with the delays of
Pebble switched off for all three alike (PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0:
every certificate is validated), then issues EC P-256 certificates, one name each:

- certfleet: one real `rotate-batch` run over `--certs` sites (by SNI) of `--servers` demo TLS listeners (default:
  one listener per site) whose certificates use an ACME connector on this Pebble (http-01 answered by the bot's
  responder). rotate-batch has no issue-only mode, so this is the whole rotation: new key, order written, ACME
  order, install, config test, reload (once per group of a server's certificates), TLS proof.
  The connector's rate limit is set with `--rate-limit` (requests/s) and `--burst`.
- certbot: a pinned certbot installed into its own venv under `--cache` (python -m venv + pip), account
  registered first, then one `certbot certonly --standalone` process per certificate, one after another, as
  cron or a renewal script runs it (Pebble's CA given through REQUESTS_CA_BUNDLE in its environment only).
  `--certbot-certs` of them (default: `--certs`).
- limit: the `acme` library alone, `--threads` threads each with its own client of one account, a 50 ms poll
  loop, the same responder; no database, no Prefect.

Prints one JSON line: certfleet_cps, certbot_cps, limit_cps, vs_certbot (certfleet / certbot), vs_limit
(certfleet / limit), the counts and seconds, and the load average at the start and the end.

    uv run python benchmarks/acme.py --certs 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file's own directory must not be on the path: its name would hide the `acme` library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks import rotate  # noqa: E402  # rotate-batch's benchmark helpers: environment, listeners, timed run

CERTBOT_VERSION = "5.8.0"  # the certbot release the performance notes measured (2.8 s per certificate)
POLL_S = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=50, help="certificates issued each way")
    parser.add_argument("--certbot-certs", type=int, default=None, help="certbot runs (default: --certs)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the bare loop")
    parser.add_argument(
        "--servers", type=int, default=None, help="certfleet's TLS listeners sharing the sites (default: one each)"
    )
    parser.add_argument("--ca-concurrency", type=int, default=8, help="rotate-batch's ca_concurrency")
    parser.add_argument("--rate-limit", type=float, default=200.0, help="the ACME connector's requests/s")
    parser.add_argument("--burst", type=int, default=1000, help="the ACME connector's rate limit burst")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "certfleet-bench")
    parser.add_argument("--skip", choices=("certbot", "limit", "certfleet"), action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certfleet-bench-acme-") as tmp:
        rotate.isolate(Path(tmp))
        print(json.dumps(run(Path(tmp), args)))


class Stack:
    """challtestsrv + Pebble, from the tests' helpers (the same binaries and environment as the ACME tests)."""

    def __init__(self, root: Path) -> None:
        from certfleet.demo.listener import free_port
        from tests.emulators.acme_env import ChallTestSrv, Pebble
        from tests.emulators.pki import TlsIdentity

        self.tls = TlsIdentity(root / "tls")
        self.dns = ChallTestSrv(root / "challtestsrv").start()
        self.http_port = free_port()  # where Pebble's VA fetches http-01 answers (names resolve to 127.0.0.1)
        self.pebble = Pebble(root / "pebble", self.tls, f"127.0.0.1:{self.dns.dns_port}", self.http_port).start()

    def stop(self) -> None:
        self.pebble.stop()
        self.dns.stop()


# -- the limit: the acme library alone ---------------------------------------------------------------------


def _bare_client(stack: Stack, key: Any, uri: str | None) -> Any:
    from acme import client as acme_client
    from acme import messages
    from josepy.jwa import ES256

    net = acme_client.ClientNetwork(key, alg=ES256, verify_ssl=str(stack.tls.ca_path), user_agent="bench")
    net.session.trust_env = False  # REQUESTS_CA_BUNDLE is set on this machine
    client = acme_client.ClientV2(acme_client.ClientV2.get_directory(stack.pebble.directory_url, net), net)
    if uri is None:
        regr = client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        uri = regr.uri
    net.account = messages.RegistrationResource(body=messages.Registration(), uri=uri)
    return client


def _bare_issue(client: Any, tokens: dict[str, str], name: str) -> None:
    from acme import messages
    from cryptography.hazmat.primitives.asymmetric import ec

    from certfleet.pki.csr import build_csr, csr_to_pem

    csr = csr_to_pem(build_csr(ec.generate_private_key(ec.SECP256R1()), name, [name]))
    orderr = client.new_order(csr.encode())
    key = client.net.key
    for authzr in orderr.authorizations:
        challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
        tokens[challb.chall.encode("token")] = challb.chall.validation(key)
        client.answer_challenge(challb, challb.chall.response(key))
    for authzr in orderr.authorizations:
        while authzr.body.status in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
            time.sleep(POLL_S)
            authzr, _ = client.poll(authzr)
        if authzr.body.status != messages.STATUS_VALID:
            raise RuntimeError(f"{name}: authorization {authzr.body.status}")
    body = client.begin_finalization(orderr).body
    while body.status != messages.STATUS_VALID:
        if body.status == messages.STATUS_INVALID:
            raise RuntimeError(f"{name}: order invalid")
        time.sleep(POLL_S)
        body = messages.Order.from_json(client._post_as_get(orderr.uri).json())
    assert "BEGIN CERTIFICATE" in client._post_as_get(body.certificate).text


def run_limit(stack: Stack, certs: int, threads: int) -> float:
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy.jwk import JWKEC

    from certfleet.connectors.ca.acme_challenges import Http01Responder

    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    uri = _bare_client(stack, key, None).net.account.uri  # the account exists before timing starts
    responder = Http01Responder.acquire("127.0.0.1", stack.http_port)
    local = threading.local()

    def one(n: int) -> None:
        if not hasattr(local, "client"):
            local.client = _bare_client(stack, key, uri)
        _bare_issue(local.client, responder.tokens, f"limit-{n}.bench.test")

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(certs)))
        return time.perf_counter() - t0
    finally:
        responder.release()


# -- certbot -------------------------------------------------------------------------------------------------


def certbot_binary(cache: Path) -> Path:
    """certbot CERTBOT_VERSION in its own venv under the cache directory, installed on first use."""
    venv = cache / f"certbot-{CERTBOT_VERSION}"
    binary = venv / "bin" / "certbot"
    if not binary.exists():  # a half-made venv (pip failed) is made again
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"certbot=={CERTBOT_VERSION}"], check=True, timeout=600
        )
    return binary


def run_certbot(stack: Stack, root: Path, certs: int, cache: Path) -> float:
    binary = certbot_binary(cache)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(stack.tls.ca_path)}  # Pebble's HTTPS certificate's CA
    dirs = ["--config-dir", str(root / "cfg"), "--work-dir", str(root / "work"), "--logs-dir", str(root / "logs")]
    common = ["--non-interactive", "--server", stack.pebble.directory_url, *dirs]
    register = [str(binary), "register", "--agree-tos", "--register-unsafely-without-email", *common]
    subprocess.run(register, env=env, check=True, capture_output=True, timeout=120)
    t0 = time.perf_counter()
    for n in range(certs):
        argv = [
            str(binary),
            "certonly",
            "--standalone",
            "--http-01-address",
            "127.0.0.1",
            "--http-01-port",
            str(stack.http_port),
            "--key-type",
            "ecdsa",
            "--elliptic-curve",
            "secp256r1",
            "-d",
            f"certbot-{n}.bench.test",
            *common,
        ]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"certbot failed for certificate {n}: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


# -- certfleet -----------------------------------------------------------------------------------------------


def run_certfleet(
    stack: Stack, root: Path, certs: int, servers: int, ca_concurrency: int, rate: float, burst: int
) -> float:
    from certfleet.ca_admin import service
    from certfleet.ca_admin.forms import AcmeForm, AdvancedOptions
    from certfleet.models.db import session_scope

    boot = rotate.bootstrap()
    form = AcmeForm(
        name="Pebble",
        directory_url=stack.pebble.directory_url,
        http01_listen=f"127.0.0.1:{stack.http_port}",
        advanced=AdvancedOptions(tls_ca_bundle=stack.tls.ca_pem, rate_limit_per_second=rate, rate_limit_burst=burst),
    )
    with session_scope() as s:
        connector_id = service.create_connector(s, form, actor="benchmark")
    listeners, sites = rotate.plan_sites(root / "fleet", certs, servers)
    try:
        for listener in listeners:
            listener.launch(ready_timeout=120)
        rotate.register(listeners, sites, ca_connector_id=connector_id, bot_id=boot.local_bot_id)
        return rotate.timed_rotate_batch(certs, batch_name="bench", ca_concurrency=ca_concurrency)
    finally:
        for listener in listeners:
            listener.stop()


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    certbot_certs = args.certbot_certs or args.certs
    if "certbot" not in args.skip:
        certbot_binary(args.cache)  # installing it is not part of any timing
    load_start = os.getloadavg()[0]
    stack = Stack(root / "acme")
    try:
        limit_s = run_limit(stack, args.certs, args.threads) if "limit" not in args.skip else None
        certbot_s = (
            run_certbot(stack, root / "certbot", certbot_certs, args.cache) if "certbot" not in args.skip else None
        )
        certfleet_s = (
            run_certfleet(
                stack, root, args.certs, args.servers or args.certs, args.ca_concurrency, args.rate_limit, args.burst
            )
            if "certfleet" not in args.skip
            else None
        )
    finally:
        stack.stop()
    certfleet_cps = args.certs / certfleet_s if certfleet_s else None
    certbot_cps = certbot_certs / certbot_s if certbot_s else None
    limit_cps = args.certs / limit_s if limit_s else None
    return {
        "certs": args.certs,
        "certbot_certs": certbot_certs,
        "threads": args.threads,
        "servers": args.servers or args.certs,
        "ca_concurrency": args.ca_concurrency,
        "rate_limit": args.rate_limit,
        "burst": args.burst,
        "certfleet_s": _round(certfleet_s),
        "certbot_s": _round(certbot_s),
        "limit_s": _round(limit_s),
        "certfleet_cps": _round(certfleet_cps),
        "certbot_cps": _round(certbot_cps),
        "limit_cps": _round(limit_cps),
        "vs_certbot": _round(certfleet_cps / certbot_cps if certfleet_cps and certbot_cps else None),
        "vs_limit": _round(certfleet_cps / limit_cps if certfleet_cps and limit_cps else None),
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    main()

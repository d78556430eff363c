"""SSH transport and nginx handler speed against a real sshd + nginx on 127.0.0.1 (run as root).

Prints one JSON line: connect_ms (TCP + key exchange + password auth), run_ms, write_ms (atomic 2 KB write),
read_ms, each median; sudo_run_ms and sudo_write_ms (the same through sudo with a password);
nginx_certs_per_min_reused (plan + backup + install + `nginx -t` for N certificates over one connection,
then one reload, as a batch to one server does) and nginx_certs_per_min_reconnect (a new connection per
certificate, what the per-server connection cache avoids).

    uv run python benchmarks/ssh_deploy.py [--certs 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn: Callable[[], object], n: int = 20) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=20)
    args = parser.parse_args()

    from certfleet.connectors.servers.nginx import NginxHandler
    from certfleet.connectors.servers.server_kinds import ServerSpec, TargetSpec
    from certfleet.connectors.servers.ssh import SshSettings, SshTransport
    from certfleet.demo.listener import free_port
    from tests.integration.pki_kit import issued_bundle
    from tests.integration.sshd import PASSWORD, PASSWORD_USER, SUDO_USER, chown_tree, kill_pidfile, running_sshd
    from tests.integration.sshd import scratch_dir as make_dir

    result: dict[str, float | int] = {}
    with running_sshd() as sshd:

        def settings(user: str = PASSWORD_USER, sudo: bool = False) -> SshSettings:
            return SshSettings(
                host="127.0.0.1",
                port=sshd.port,
                username=user,
                password=PASSWORD,
                host_key=sshd.host_key_line,
                use_sudo=sudo,
            )

        home = make_dir(PASSWORD_USER, "certfleet-bench-")
        result["connect_ms"] = median_ms(lambda: SshTransport(settings()).__enter__().close(), 10)
        payload = b"x" * 2048
        with SshTransport(settings()) as t:
            result["run_ms"] = median_ms(lambda: t.run("true", 10))
            result["write_ms"] = median_ms(lambda: t.write_atomic(str(home / "f.pem"), payload, 0o600))
            result["read_ms"] = median_ms(lambda: t.read(str(home / "f.pem")))
        with SshTransport(settings(SUDO_USER, sudo=True)) as t:
            result["sudo_run_ms"] = median_ms(lambda: t.run("true", 10))
            result["sudo_write_ms"] = median_ms(lambda: t.write_atomic(str(home / "g.pem"), payload, 0o600))

        # A batch to one nginx: N server blocks, N certificates.
        root = make_dir(PASSWORD_USER, "certfleet-bench-nginx-")
        port = free_port()
        blocks = []
        for n in range(args.certs):
            name = f"site{n}.example.test"
            bundle = issued_bundle(name)
            (root / f"{name}.pem").write_bytes(bundle.fullchain_pem)
            (root / f"{name}.key").write_bytes(bundle.key_pem)
            blocks.append(
                f"server {{ listen 127.0.0.1:{port} ssl; server_name {name};"
                f" ssl_certificate {name}.pem; ssl_certificate_key {name}.key; }}"
            )
        (root / "nginx.conf").write_text(
            f"pid {root}/nginx.pid; error_log {root}/error.log; events {{}}\n"
            f"http {{ access_log off; client_body_temp_path {root}/t1; proxy_temp_path {root}/t2;"
            f" fastcgi_temp_path {root}/t3; uwsgi_temp_path {root}/t4; scgi_temp_path {root}/t5;"
            f" {' '.join(blocks)} }}\n"
        )
        chown_tree(root, PASSWORD_USER)
        subprocess.run(["nginx", "-c", str(root / "nginx.conf")], user=PASSWORD_USER, check=True)
        bundles = [issued_bundle(f"site{n}.example.test") for n in range(args.certs)]

        def deploy_all(reuse: bool) -> float:
            start = time.perf_counter()
            shared = SshTransport(settings())
            last: NginxHandler | None = None
            for n, bundle in enumerate(bundles):
                transport = shared if reuse else SshTransport(settings())
                handler = NginxHandler(
                    transport,
                    ServerSpec(server_type="nginx", app_path=str(root)),
                    TargetSpec(port=port, server_name=f"site{n}.example.test"),
                )
                for write in handler.plan(bundle):
                    handler.snapshot(write.path, write.path + ".certfleet-backup-bench")
                    handler.install(write)
                handler.verify()
                last = handler
                if not reuse:
                    transport.close()
            assert last is not None
            last.activate()
            shared.close()
            return round(args.certs / (time.perf_counter() - start) * 60, 1)

        try:
            result["nginx_certs_per_min_reused"] = deploy_all(reuse=True)
            result["nginx_certs_per_min_reconnect"] = deploy_all(reuse=False)
        finally:
            kill_pidfile(root / "nginx.pid")
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    result["certs"] = args.certs
    print(json.dumps(result))


if __name__ == "__main__":
    main()

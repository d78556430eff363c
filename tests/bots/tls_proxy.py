"""The README's scale-out step 4 for the tests: nginx terminates TLS in front of certfleet's API and forwards to
it with X-Forwarded-Proto/-For, under a certificate from a private CA that clients trust with --ca-bundle."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from certfleet.demo.listener import free_port
from certfleet.jobs.store import api_trust
from tests.emulators.acme_env import Process, _spawn
from tests.integration.pki_kit import ca_root_pem, issued_bundle
from tests.integration.sshd import require


class TlsProxy:
    def __init__(self, folder: Path, backend_port: int) -> None:
        self.folder = folder
        self.backend_port = backend_port
        self.port = free_port()
        self.ca_bundle = folder / "certfleet-ca.pem"
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> None:
        nginx = require("nginx", "run `bash scripts/install-system-packages.sh` (Debian package nginx)")
        root = self.folder
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        bundle = issued_bundle("localhost")
        (root / "fullchain.pem").write_bytes(bundle.leaf_pem + bundle.chain_pem)
        (root / "key.pem").write_bytes(bundle.key_pem)
        (root / "key.pem").chmod(0o600)
        self.ca_bundle.write_bytes(ca_root_pem())
        temp = " ".join(
            f"{kind}_temp_path {root}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (root / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name localhost;
        ssl_certificate {root}/fullchain.pem;
        ssl_certificate_key {root}/key.pem;
        # Bodies and answers stay in memory: nginx's workers (not root) cannot write temp files under pytest's
        # private tmp_path, and an agent's record batch is larger than the default 16k buffer.
        client_max_body_size 64m;
        client_body_buffer_size 64m;
        proxy_buffering off;
        location / {{
            proxy_pass http://127.0.0.1:{self.backend_port};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""
        )
        self.process = _spawn([nginx, "-c", str(root / "nginx.conf")], root / "nginx.out")
        deadline = time.monotonic() + 120  # the dashboard behind it answers its first request slowly on a busy CI
        while True:
            try:
                trust = api_trust(str(self.ca_bundle))
                if httpx.get(f"{self.url}/healthz", verify=trust, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx (TLS proxy) did not start: {(root / 'error.log').read_text(errors='replace')}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

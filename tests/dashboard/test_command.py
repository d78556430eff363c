"""`certfleet dashboard`: creates the first admin (password printed once), serves the pages and the API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from certfleet.demo.listener import free_port

CERTFLEET = str(Path(sys.executable).parent / "certfleet")


def test_dashboard_command_prints_the_first_admin_password_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTFLEET_"))}
    env.update(CERTFLEET_DATA_DIR=str(tmp_path), CERTFLEET_DASHBOARD_PORT=str(port))
    proc = subprocess.Popen(
        [CERTFLEET, "dashboard"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("dashboard: http" in line for line in lines):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail("certfleet dashboard exited:\n" + "".join(lines))
            lines.append(line)
        text = "".join(lines)
        match = re.search(r"first login: user admin, password (\S+) ", text)
        assert match, text
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, trust_env=False, timeout=5) as client:
            for _ in range(100):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            login = client.get("/login")
            csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', login.text)
            assert csrf
            response = client.post(
                "/login", data={"username": "admin", "password": match.group(1), "csrf_token": csrf.group(1)}
            )
            assert response.status_code == 303
            assert "Provisioning Dashboard" in client.get("/").text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stdout.close()

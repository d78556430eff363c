"""Real components for the bot tests and benchmarks/bots.py: a Prefect server on PostgreSQL with an auth string,
and bot agents started as separate processes with nothing but certfleet's URL and a bot token."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from certfleet.connectors.base import IssueRequest
from certfleet.demo.listener import free_port
from certfleet.models import repo
from certfleet.models.db import session_scope
from certfleet.models.orm import CAConnector, Certificate
from certfleet.pki.csr import build_csr, csr_to_pem
from certfleet.pki.keys import KeySpec, generate_private_key, private_key_to_pem

# What a bot host does not have: certfleet's database URL, its key, a Prefect address of its own.
NOT_ON_A_BOT = (
    "CERTFLEET_DATABASE_URL",
    "CERTFLEET_SECRET_KEY",
    "CERTFLEET_SECRET_KEY_FILE",
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_HOME",
)


def basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


class PrefectServer:
    """`prefect server start` on its own PostgreSQL database (created here, dropped at the end)."""

    def __init__(self, admin_url: str, home: Path) -> None:
        self.admin_url = admin_url
        self.home = home
        self.port = free_port()
        self.auth = "certfleet-test:" + uuid.uuid4().hex
        self.database = f"prefect_test_{uuid.uuid4().hex[:10]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "prefect-server.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def database_url(self) -> str:
        url = make_url(self.admin_url).set(drivername="postgresql+asyncpg", database=self.database)
        return url.render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def start(self, timeout: float = 300.0) -> None:
        self._admin(f'CREATE DATABASE "{self.database}"')
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=self.database_url,
            PREFECT_SERVER_API_AUTH_STRING=self.auth,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="false",
        )
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", headers=basic(self.auth), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Prefect server did not answer: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def dump(self) -> str:
        """Everything Prefect stored (flow runs and their parameters, task runs, states, logs, artifacts)."""
        url = make_url(self.admin_url).set(database=self.database)
        argv = ["pg_dump", "--data-only", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
        argv += ["-U", url.username or "postgres", self.database]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


class AgentProcess:
    """`certfleet bot run --url --token` in its own session (so a kill takes its worker along)."""

    def __init__(self, url: str, token: str, folder: Path, ca_bundle: Path | None = None) -> None:
        self.url, self.token, self.folder, self.ca_bundle = url, token, folder, ca_bundle
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "agent.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "data").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_BOT}
        env["CERTFLEET_DATA_DIR"] = str(self.folder / "data")  # empty: no key file, no database
        argv = [str(Path(sys.executable).with_name("certfleet")), "bot", "run", "--url", self.url]
        argv += ["--token", self.token, "--work-dir", str(self.folder / "work")]
        if self.ca_bundle is not None:
            argv += ["--ca-bundle", str(self.ca_bundle)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to the agent and its worker: a bot host that lost power."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_log(self) -> str:
        path = self.folder / "work" / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""


def issue_with_builtin_ca(cert_ids: list[int]) -> None:
    """Issued by the built-in CA as issue-certificate would, without a flow (these measure where deployments run)."""
    from certfleet.tasks.build import build_ca
    from certfleet.tasks.issuance import make_current

    with session_scope() as s:
        ca = build_ca(s, s.scalars(select(CAConnector).where(CAConnector.kind == "local")).one())
        for cert_id in cert_ids:
            cert = repo.get(s, Certificate, cert_id)
            key = generate_private_key(KeySpec(algorithm="ec", size=256))
            csr = csr_to_pem(build_csr(key, cert.common_name, [cert.common_name]))
            chain = ca.issue(IssueRequest(csr_pem=csr, idempotency_key=f"bots-test-{cert_id}")).pem_chain or ""
            make_current(s, cert, chain, private_key_to_pem(key))

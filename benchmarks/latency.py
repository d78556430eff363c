"""Click-to-served latency on the embedded default: from the API call that starts a deploy to Deployed.

Starts a real `certfleet up` (embedded Prefect server on SQLite, the central worker and the local bot's
worker, the dashboard, the demo fleet of three TLS listeners) in a temporary data directory and waits until it
has provisioned the demo fleet. Then, through the dashboard API with an API token:

- `--runs` times: POST /api/v1/certificates/{id}/deploy for a working demo host, then poll the certificate's
  deployments until the new one is Deployed;
- `--rollback-runs` times, for a host broken on purpose (its reload command reloads nothing, so the new serial
  is never served): POST deploy, poll until the new deployment is Rolled Back. This includes the verify wait
  (CERTFLEET_VERIFY_TIMEOUT_S, 5 s here as in `certfleet demo`) and proving the old serial is served again.

Prints one JSON line: deploy_p50_s, deploy_p95_s, rollback_p50_s, runs, rollback_runs, worker_query_seconds, and
where a deploy's time goes, from the flow run's own state times in Prefect (medians over the deploys):
pickup_p50_s (Scheduled to Pending: until the worker takes it; `certfleet up`'s workers are woken when a run
starts on their host, else it waits for the next poll), start_p50_s (Pending to Running: the
flow-run process starting, importing Prefect and certfleet), work_p50_s (Running to the run's end); and what the
workers' polling costs when nothing runs: idle_server_cpu_pct (the Prefect server process) and
idle_workers_cpu_pct (both workers and their warm launchers), CPU over 20 s idle in percent of one core; and
warm_starts and load_average_1m (the machine's one-minute load average before the deploys and at the end).

    uv run python benchmarks/latency.py [--runs 20] [--rollback-runs 5] [--cold]

`--cold` starts `certfleet up` with CERTFLEET_WARM_STARTS=0: every flow run a new Python process, as Prefect's
process worker starts it (for a comparison at the same machine load).

Prefect settings in the environment other than PREFECT_API_* (e.g. PREFECT_WORKER_QUERY_SECONDS=10 for Prefect's
default poll) are passed to `certfleet up`, which is started as the CLI tests start it (tests/cli/test_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
POLL_S = 0.05  # how often the benchmark looks: small against what it measures


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]


def break_reload(data_dir: Path, certificate_id: int) -> None:
    """The host's reload command reloads nothing (as `certfleet demo` breaks its last host)."""
    code = f"from certfleet.demo.run import _set_reload_command\n_set_reload_command({certificate_id}, 'true')\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTFLEET_", "PREFECT_"))}
    env["CERTFLEET_DATA_DIR"] = str(data_dir)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
        )
        self.run_ids: list[str] = []

    def certificate(self, cert_id: int) -> dict[str, Any]:
        response = self.client.get(f"/certificates/{cert_id}")
        response.raise_for_status()
        return dict(response.json())

    def newest_deployment_id(self, cert_id: int) -> int:
        response = self.client.get(f"/certificates/{cert_id}/deployments")
        response.raise_for_status()
        rows = response.json()
        return int(rows[0]["id"]) if rows else 0

    def start(self, cert_id: int, action: str) -> str:
        """Starts the action's run; returns its flow run id."""
        response = self.client.post(f"/certificates/{cert_id}/{action}")
        if response.status_code != 202:
            raise SystemExit(f"{action} of certificate {cert_id}: {response.status_code} {response.text}")
        return str(response.json()["flow_run_id"])

    def wait_for_status(self, cert_id: int, wanted: set[str], timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = str(self.certificate(cert_id)["status"])
            if status in wanted:
                return status
            time.sleep(0.5)
        raise SystemExit(f"certificate {cert_id} did not reach {wanted} within {timeout:g} s")

    def timed_deploy(self, cert_id: int, expected: str, timeout: float = 300) -> float:
        """Seconds from the POST to the new deployment's end; it must end `expected`."""
        before = self.newest_deployment_id(cert_id)
        started = time.perf_counter()
        self.run_ids.append(self.start(cert_id, "deploy"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(f"/certificates/{cert_id}/deployments")
            response.raise_for_status()
            rows = [r for r in response.json() if r["id"] > before]
            if rows and rows[0]["finished_at"] is not None:
                elapsed = time.perf_counter() - started
                if rows[0]["status"] != expected:
                    raise SystemExit(f"deployment {rows[0]['id']} ended {rows[0]['status']}: {rows[0]['reason']}")
                return elapsed
            time.sleep(POLL_S)
        raise SystemExit(f"the deploy of certificate {cert_id} did not end within {timeout:g} s")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def idle_cpu(up_pid: int, seconds: float = 20.0) -> dict[str, float]:
    """CPU of the Prefect server and of the workers while nothing runs (their polling), % of one core."""
    kids = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in _children(up_pid)}
    server = [pid for pid, argv in kids.items() if b"server" in argv and b"start" in argv]
    # certfleet's workers (`python -m certfleet.deployments.warm_worker`) and their warm launchers
    workers = [pid for pid, argv in kids.items() if any(b"certfleet.deployments.warm_" in a for a in argv)]
    workers += [c for pid in list(workers) for c in _children(pid) if b"warm_launcher" in _cmdline(c)]
    before = {pid: _cpu_seconds(pid) for pid in server + workers}
    time.sleep(seconds)
    used = {pid: _cpu_seconds(pid) - cpu for pid, cpu in before.items()}
    return {
        "idle_server_cpu_pct": round(sum(used[p] for p in server) / seconds * 100, 1),
        "idle_workers_cpu_pct": round(sum(used[p] for p in workers) / seconds * 100, 1),
    }


def phases(prefect_api: str, auth_string: str, run_ids: list[str]) -> dict[str, float]:
    """Medians of the time between a run's states: Scheduled -> Pending -> Running -> its end."""
    from datetime import datetime

    from certfleet.deployments.api import auth_headers

    gaps: dict[str, list[float]] = {"pickup_p50_s": [], "start_p50_s": [], "work_p50_s": []}
    with httpx.Client(base_url=prefect_api, headers=auth_headers(auth_string), timeout=30, trust_env=False) as c:
        for run_id in run_ids:
            states = c.get("/flow_run_states/", params={"flow_run_id": run_id}).json()
            at = {}
            for state in states:
                at.setdefault(state["type"], datetime.fromisoformat(state["timestamp"]))
            end = next((at[t] for t in ("COMPLETED", "FAILED", "CRASHED") if t in at), None)
            if {"SCHEDULED", "PENDING", "RUNNING"} <= set(at) and end is not None:
                gaps["pickup_p50_s"].append((at["PENDING"] - at["SCHEDULED"]).total_seconds())
                gaps["start_p50_s"].append((at["RUNNING"] - at["PENDING"]).total_seconds())
                gaps["work_p50_s"].append((end - at["RUNNING"]).total_seconds())
    return {k: round(statistics.median(v), 2) for k, v in gaps.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="deploys to a working host")
    parser.add_argument("--rollback-runs", type=int, default=5, help="deploys to the broken host")
    parser.add_argument("--cold", action="store_true", help="every run a new process (CERTFLEET_WARM_STARTS=0)")
    args = parser.parse_args()

    from tests.cli.test_cli import admin_api_token, start_up, stop_up

    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-latency-"))
    passed = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT_API_")}
    if args.cold:
        passed["CERTFLEET_WARM_STARTS"] = "0"
    up = start_up(work / "data", **passed)
    try:
        api = Api(f"http://127.0.0.1:{up.dashboard_port}", admin_api_token(up.data_dir, "latency benchmark"))
        good, broken = 1, 3  # demo certificates web-1 and web-3
        for cert_id in (1, 2, 3):  # `up` provisions the demo fleet on its first start
            api.wait_for_status(cert_id, {"Deployed"})
        api.timed_deploy(good, "Deployed")  # warm-up: first imports after start fill the bytecode cache
        api.run_ids.clear()
        load_before = os.getloadavg()[0]
        deploys = [api.timed_deploy(good, "Deployed") for _ in range(args.runs)]
        breakdown = phases(up.api, up.auth_string, api.run_ids)

        break_reload(up.data_dir, broken)
        serial = api.certificate(broken)["serial_number"]
        api.start(broken, "issue")  # a new serial, which the broken host will never serve
        deadline = time.monotonic() + 300
        while api.certificate(broken)["serial_number"] == serial and time.monotonic() < deadline:
            time.sleep(0.5)
        rollbacks = [api.timed_deploy(broken, "Rolled Back") for _ in range(args.rollback_runs)]
        time.sleep(5)  # the last run's process has ended
        idle = idle_cpu(up.process.pid)
    finally:
        stop_up(up)
    if "Traceback" in up.console:
        print(up.console, file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "deploy_p50_s": round(statistics.median(deploys), 2),
                "deploy_p95_s": round(p95(deploys), 2),
                "rollback_p50_s": round(statistics.median(rollbacks), 2) if rollbacks else None,
                "runs": args.runs,
                "rollback_runs": args.rollback_runs,
                "worker_query_seconds": os.environ.get("PREFECT_WORKER_QUERY_SECONDS"),
                "warm_starts": not args.cold,
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after
                **breakdown,
                **idle,
            }
        )
    )


if __name__ == "__main__":
    main()

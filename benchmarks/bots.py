"""Deployments through two bot agents (the API hop) against the central host's own worker (the database), for the
same certificates, and what an idle agent costs.

A Prefect server on PostgreSQL with an auth string, certfleet's API, N demo TLS listeners (local servers) with
an issued certificate each. First every server is mapped to `local-bot` and a worker on its queue deploys all
N (runs read the database directly); then the servers are split over two bots whose agents run as separate
processes with only `--url` and `--token`, and the same N are deployed again (runs fetch jobs from the API).
Each phase is timed from the first run started to the last run ended; every run must end Completed.

Prints one JSON line: bots_dps, central_dps, ratio (bots / central), agent_idle_cpu_pct (agent and worker
together over 20 s idle), agent_rss_mb (the agent process), worker_rss_mb (its Prefect worker), certs.

    uv run python benchmarks/bots.py [--certs 100] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS in MB) of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))  # fmt: skip
    return cpu, rss_kb / 1024


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(x) for x in text]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=100)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-bots-"))
    os.environ.update(
        CERTFLEET_DATA_DIR=str(work / "data"),
        CERTFLEET_BOT_HEARTBEAT_SECONDS="5",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_HOME=str(work / "prefect-client"),
    )
    for name in ("CERTFLEET_DATABASE_URL", "CERTFLEET_SECRET_KEY", "PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
        os.environ.pop(name, None)

    from certfleet.bots.testbed import AgentProcess, PrefectServer, issue_with_builtin_ca
    from certfleet.deployments.api import use_api

    prefect = PrefectServer(args.postgres, work / "prefect")
    prefect.start()
    use_api(prefect.api_url)
    os.environ["PREFECT_API_AUTH_STRING"] = prefect.auth

    from certfleet.bots import service as bot_service
    from certfleet.bots.routing import start_deploy_runs
    from certfleet.dashboard.server import DashboardThread
    from certfleet.demo.fleet import plan_fleet, register_fleet
    from certfleet.demo.listener import free_port
    from certfleet.deployments.names import BOT_POOL, bot_queue
    from certfleet.deployments.serve import register, runner_deployments
    from certfleet.deployments.starts import wait_for_runs
    from certfleet.deployments.workers import WorkerProcess
    from certfleet.models.bootstrap import initialize
    from certfleet.models.db import session_scope
    from certfleet.models.orm import Server

    boot = initialize()
    register(runner_deployments(bot_queue(boot.local_bot_id)))
    dashboard = DashboardThread("127.0.0.1", free_port())
    dashboard.start()
    url = f"http://127.0.0.1:{dashboard.server.config.port}"
    hosts = plan_fleet(work / "fleet", args.certs)
    cert_ids = register_fleet(hosts, ca_connector_id=boot.ca_connector_id, bot_id=boot.local_bot_id)
    issue_with_builtin_ca(cert_ids)
    listeners = [h.listener() for h in hosts]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda listener: listener.launch(), listeners))
    agents: list[AgentProcess] = []
    central = WorkerProcess(BOT_POOL, bot_queue(boot.local_bot_id), name="bench-local-bot", log_path=work / "w.log")

    def deploy_all() -> float:
        start = time.perf_counter()
        runs = [run for cid in cert_ids for run in start_deploy_runs(cid, as_subflow=False)]
        ended = wait_for_runs(runs, timeout=3600)
        elapsed = time.perf_counter() - start
        bad = [(r.name, r.state_name) for r in ended if r.state_name != "Completed"]
        if bad:
            raise SystemExit(f"runs did not complete: {bad[:5]}")
        return elapsed

    try:
        central.start()
        central_s = deploy_all()
        central.stop()

        with session_scope() as s:
            made = [bot_service.create_bot(s, bot_service.BotFields(name=f"bench-{n}"), "bench") for n in (1, 2)]
            ids, tokens = [m.bot.id for m in made], [m.token for m in made]
            for n, server in enumerate(s.query(Server).order_by(Server.id)):
                server.bot_id = ids[n % 2]
        agents = [AgentProcess(url, token, work / f"agent-{n}") for n, token in enumerate(tokens)]
        for agent in agents:
            agent.start()
        time.sleep(15)  # both agents checked in and polling
        bots_s = deploy_all()

        time.sleep(5)
        assert agents[0].process is not None
        agent_pid = agents[0].process.pid
        pids = [agent_pid, *_children(agent_pid)]
        before = sum(_proc_stat(p)[0] for p in pids)
        time.sleep(20)
        after = sum(_proc_stat(p)[0] for p in pids)
        agent_rss = _proc_stat(agent_pid)[1]
        worker_rss = sum(_proc_stat(p)[1] for p in pids[1:])
    finally:
        for agent in agents:
            agent.stop()
        central.stop()
        dashboard.stop()
        for listener in listeners:
            listener.stop()
        prefect.stop()

    central_dps = args.certs / central_s
    bots_dps = args.certs / bots_s
    print(
        json.dumps(
            {
                "certs": args.certs,
                "central_dps": round(central_dps, 2),
                "bots_dps": round(bots_dps, 2),
                "ratio": round(bots_dps / central_dps, 2),
                "agent_idle_cpu_pct": round((after - before) / 20 * 100, 2),
                "agent_rss_mb": round(agent_rss, 1),
                "worker_rss_mb": round(worker_rss, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

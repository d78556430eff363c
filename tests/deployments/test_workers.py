"""The environment certfleet's Prefect workers (and so their flow runs) start with."""

from __future__ import annotations

from pathlib import Path

from certfleet.deployments.workers import WorkerProcess


def _worker(tmp_path: Path, env: dict[str, str] | None = None) -> WorkerProcess:
    return WorkerProcess("pool", "queue", name="w", log_path=tmp_path / "w.log", env=env)


def test_workers_poll_every_second_and_keep_the_bytecode_cache(tmp_path: Path) -> None:
    env = _worker(tmp_path, {"CERTFLEET_BOT_TOKEN": "t"}).environment({"PATH": "/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert env == {
        "PATH": "/bin",
        "CERTFLEET_BOT_TOKEN": "t",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # Prefect's 10 s default was most of a deploy's latency
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "15",
    }


def test_the_operators_poll_interval_wins(tmp_path: Path) -> None:
    env = _worker(tmp_path).environment({"PREFECT_WORKER_QUERY_SECONDS": "10"})
    assert env["PREFECT_WORKER_QUERY_SECONDS"] == "10"

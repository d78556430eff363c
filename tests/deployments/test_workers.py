"""The environment certfleet's Prefect workers (and so their flow runs) start with."""

from __future__ import annotations

import stat
from pathlib import Path

from certfleet.deployments.warm_worker import bind_wake_socket, file_identity, remove_wake_socket
from certfleet.deployments.workers import WAKE_ENV, WorkerProcess, wake_local_workers, wake_socket


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


def test_a_woken_worker_is_told_where_to_listen(tmp_path: Path) -> None:
    wake = wake_socket(tmp_path, "bot/1 x")
    assert wake == tmp_path / "wake" / "bot_1_x.sock"  # a queue name is no path
    worker = WorkerProcess("pool", "queue", name="w", log_path=tmp_path / "w.log", wake=wake)
    assert worker.environment({})[WAKE_ENV] == str(wake)
    assert WAKE_ENV not in _worker(tmp_path).environment({})


def test_starting_a_run_wakes_every_worker_of_the_data_directory(tmp_path: Path) -> None:
    assert wake_local_workers(tmp_path) == 0  # no worker listens: nothing to do, no error
    first = bind_wake_socket(wake_socket(tmp_path, "central"))
    second = bind_wake_socket(wake_socket(tmp_path, "bot-1"))
    try:
        assert stat.S_IMODE((tmp_path / "wake").stat().st_mode) == 0o700
        assert wake_local_workers(tmp_path) == 2
        assert first.recv(64) == b""  # an empty datagram each
        assert second.recv(64) == b""
    finally:
        first.close()
        second.close()


def test_a_socket_left_by_a_worker_that_died_is_replaced_and_a_successors_is_kept(tmp_path: Path) -> None:
    path = wake_socket(tmp_path, "q")
    old = bind_wake_socket(path)
    old_identity = file_identity(path)
    old.close()  # died without removing its socket file
    new = bind_wake_socket(path)
    try:
        remove_wake_socket(path, old_identity)  # the dead worker's clean-up must not remove the new one's
        assert path.is_socket()
        assert wake_local_workers(tmp_path) == 1
        assert new.recv(64) == b""
    finally:
        new.close()
    remove_wake_socket(path, file_identity(path))
    assert not path.exists()

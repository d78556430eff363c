"""certfleet's worker (`warm_worker`): Prefect's process worker whose runs are forked from a warm launcher.

A real Prefect server and a real worker process (as `certfleet up` starts it); each run must still be a Prefect
flow run taken from the queue, with the job's environment, ending Completed, Crashed when its process dies,
Cancelled when cancelled (and its process gone); and a launcher that dies takes no run with it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certfleet.demo.listener import free_port
from certfleet.deployments.embedded import EmbeddedPrefect
from certfleet.deployments.starts import wait_for_runs
from certfleet.deployments.workers import WorkerProcess, wake_local_workers, wake_socket
from tests.deployments import warm_flows

ROOT = Path(__file__).resolve().parents[2]
AUTH = "warm-worker-test-auth-0123456789"
POOL, QUEUE = "warm-test-pool", "warm-test-queue"
WAKE_QUEUE = "warm-wake-queue"  # its worker polls once an hour: only a wake-up starts its runs in time


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPrefect]:
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    server = EmbeddedPrefect(tmp_path_factory.mktemp("prefect"), port=free_port(), auth_string=AUTH)
    assert server.start(timeout=180) is True
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: AUTH}):
            _register()
            yield server
    finally:
        server.stop()


def _register() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.types.entrypoint import EntrypointType

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    for f in (warm_flows.ok, warm_flows.crash, warm_flows.sleep):
        deployment = f.to_deployment(
            name="test",
            work_pool_name=POOL,
            work_queue_name=QUEUE,
            entrypoint_type=EntrypointType.MODULE_PATH,
            job_variables={"env": {"WARM_TEST_VAR": "from-the-job", "PREFECT_TASKS_DEFAULT_RETRIES": "7"}},
        )
        deployment.apply()  # type: ignore[union-attr]
    woken = warm_flows.ok.to_deployment(
        name="woken", work_pool_name=POOL, work_queue_name=WAKE_QUEUE, entrypoint_type=EntrypointType.MODULE_PATH
    )
    woken.apply()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def worker(prefect: EmbeddedPrefect, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    env = {"PREFECT_API_URL": prefect.api_url, "PREFECT_API_AUTH_STRING": AUTH, "PYTHONPATH": str(ROOT)}
    process = WorkerProcess(POOL, QUEUE, name="warm-test", log_path=tmp_path_factory.mktemp("w") / "w.log", env=env)
    process.start()
    yield process
    process.stop()


def _start(name: str, **parameters: Any) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(f"{name}/test", parameters=parameters, timeout=0)


def _seen(path: Path, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"the run never wrote {path}"
        time.sleep(0.2)
    return dict(json.loads(path.read_text()))


def _launcher_pid(worker: WorkerProcess) -> int:
    assert worker.process is not None
    children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children").read_text().split()
    (launcher,) = [int(c) for c in children if b"warm_launcher" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return launcher


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_run_is_forked_from_the_launcher_with_the_jobs_environment(worker: WorkerProcess, tmp_path: Path) -> None:
    report = tmp_path / "ok.json"
    (ended,) = wait_for_runs([_start("warm-ok", path=str(report))], timeout=300)
    assert ended.state_name == "Completed"
    seen = _seen(report)
    assert seen["ppid"] == _launcher_pid(worker)  # forked by the warm launcher, not started by the worker
    assert seen["env"] == "from-the-job"  # the job template's env reaches the run, as Prefect's worker gives it
    assert seen["retries"] == 7  # and Prefect's settings in the run are read from it
    assert seen["cwd"].endswith("prefect")  # a temporary working directory, as Prefect's worker makes one
    deadline = time.monotonic() + 60  # and removed once the worker saw the process end
    while Path(seen["cwd"]).exists():
        assert time.monotonic() < deadline, "the run's working directory was not removed"
        time.sleep(0.2)


def test_a_run_whose_process_dies_ends_crashed(worker: WorkerProcess, tmp_path: Path) -> None:
    report = tmp_path / "crash.json"
    (ended,) = wait_for_runs([_start("warm-crash", path=str(report))], timeout=300)
    assert ended.state_name == "Crashed"
    assert ended.state is not None
    assert "Process exited with status code: 3" in (ended.state.message or "")
    assert _seen(report)["ppid"] == _launcher_pid(worker)


def test_a_cancelled_run_is_stopped(worker: WorkerProcess, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    report = tmp_path / "sleep.json"
    run = _start("warm-sleep", path=str(report), seconds=600)
    pid = _seen(report)["pid"]
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling())
    (ended,) = wait_for_runs([run], timeout=300)
    assert ended.state_name == "Cancelled"
    deadline = time.monotonic() + 60
    while _alive(pid):
        assert time.monotonic() < deadline, "the cancelled run's process is still running"
        time.sleep(0.2)


def test_a_run_outlives_its_launcher_and_the_next_run_gets_a_new_one(worker: WorkerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "sleeping.json"
    run = _start("warm-sleep", path=str(gate), seconds=5)
    first = _seen(gate)
    launcher = _launcher_pid(worker)
    assert first["ppid"] == launcher
    os.kill(launcher, signal.SIGKILL)
    (ended,) = wait_for_runs([run], timeout=300)
    assert ended.state_name == "Completed"  # the run reported its own end; losing the launcher lost nothing
    report = tmp_path / "after.json"
    (again,) = wait_for_runs([_start("warm-ok", path=str(report))], timeout=300)
    assert again.state_name == "Completed"
    assert _seen(report)["ppid"] == _launcher_pid(worker) != launcher


def test_a_woken_worker_takes_a_run_at_once(prefect: EmbeddedPrefect, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment

    home = Path(tempfile.mkdtemp(prefix="wake-"))  # short: a Unix socket's path is limited
    wake = wake_socket(home, WAKE_QUEUE)
    env = {
        "PREFECT_API_URL": prefect.api_url,
        "PREFECT_API_AUTH_STRING": AUTH,
        "PYTHONPATH": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "3600",
    }
    process = WorkerProcess(POOL, WAKE_QUEUE, name="warm-woken", log_path=tmp_path / "w.log", env=env, wake=wake)
    process.start()
    try:
        deadline = time.monotonic() + 300
        while not wake.is_socket():
            assert time.monotonic() < deadline, "the worker did not start: " + (tmp_path / "w.log").read_text()
            time.sleep(0.2)
        report = tmp_path / "woken.json"
        run = run_deployment("warm-ok/woken", parameters={"path": str(report)}, timeout=0)
        # Its own polls come once an hour (the first one, at its start, may even be skipped: Prefect's worker does
        # not poll before it has synced with the API), so only a wake-up starts the run. A wake-up that comes
        # before that sync is skipped the same way: it is woken until it takes the run.
        with get_client(sync_client=True) as client:
            while client.read_flow_run(run.id).state_type == StateType.SCHEDULED:
                assert time.monotonic() < deadline, "the run was not taken: " + (tmp_path / "w.log").read_text()
                assert wake_local_workers(home) == 1
                time.sleep(0.5)
        (ended,) = wait_for_runs([run], timeout=300)
        assert ended.state_name == "Completed"
        assert _seen(report)["ppid"] != os.getpid()
    finally:
        process.stop()
    assert not wake.exists()  # the worker removed its socket when it stopped
    shutil.rmtree(home, ignore_errors=True)

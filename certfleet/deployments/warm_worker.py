"""certfleet's Prefect worker: Prefect's process worker whose flow runs are forked from a warm launcher.

`python -m certfleet.deployments.warm_worker --pool P --work-queue Q --name N --limit L` is what `certfleet up`
and `certfleet bot run` start (see `workers.WorkerProcess`). It is Prefect's `ProcessWorker` (same work pool type,
`process`, same job template and variables), so everything about a run is Prefect's: the worker polls the queue,
marks the run Pending, and Prefect's `FlowRunExecutor` starts it, tracks it, cancels it (control channel, then
SIGTERM, then SIGKILL) and marks it Crashed if its process ends with a non-zero status. Only the start differs:
instead of a new `python -m prefect.engine`, the run's process is forked from `warm_launcher` (Prefect and
certfleet already imported), with the environment that Prefect's starter would have given it (the worker's,
the job's `env`, the worker's Prefect settings, the flow run id and the control channel's port and token).

With CERTFLEET_WORKER_WAKE_SOCKET set (see `workers.wake_socket`), the worker also polls whenever a datagram
arrives on that Unix socket: a run started on this host is taken at once, not at the next poll.

A job whose `command` is set or whose output is not streamed (`stream_output: false`), or a launcher that
could not start warm, falls back to Prefect's own start.
CERTFLEET_WARM_STARTS=0 in the environment turns the launcher off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.runner._control_channel import ControlChannel

WARM_ENV = "CERTFLEET_WARM_STARTS"
WAKE_ENV = "CERTFLEET_WORKER_WAKE_SOCKET"  # as certfleet.deployments.workers.WAKE_ENV (not imported: no cycle)


class LauncherGone(RuntimeError):
    """The launcher process ended or never became warm."""


class ForkedRun:
    """What Prefect's `ProcessHandle` needs of a process: its pid and, once it ended, its exit status."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.ended = asyncio.Event()


class ForkedRunScope:
    """Signals go to the run's pid only while the launcher has not reported it ended (no stray kill of a reused
    pid); the launcher reaps it."""

    wait_after_graceful_kill = True

    def __init__(self, run: ForkedRun) -> None:
        self.run = run

    def is_alive(self, pid: int) -> bool:
        return self.run.returncode is None

    def graceful_kill(self, pid: int) -> None:
        self._signal(signal.SIGTERM)

    def hard_kill(self, pid: int) -> None:
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        pass

    def _signal(self, sig: signal.Signals) -> None:
        if self.run.returncode is not None:
            raise ProcessLookupError(self.run.pid)
        os.kill(self.run.pid, sig)


class Launcher:
    """The worker's side of `warm_launcher`: one process, requests and answers as JSON lines over a socket."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ids = itertools.count(1)
        self.starting: dict[int, asyncio.Future[int]] = {}
        self.runs: dict[int, ForkedRun] = {}
        self.reading: asyncio.Task[None] | None = None
        self.ended = False  # its socket closed: it exited or was killed
        self.cold_reason: str | None = None

    async def start(self) -> None:
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "certfleet.deployments.warm_launcher", str(theirs.fileno())]
        # The environment a run gets before the job's part (see WarmStarter.environment): a run whose job adds no
        # Prefect setting then needs no new settings object in the child.
        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
        self.process = subprocess.Popen(
            argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=sanitize_subprocess_env(env)
        )
        theirs.close()
        self.reader, self.writer = await asyncio.open_unix_connection(sock=ours)
        hello = json.loads(await self.reader.readline() or b'{"ready": false, "reason": "it ended"}')
        if not hello.get("ready"):
            self.cold_reason = str(hello.get("reason"))
            await self.close()
            raise LauncherGone(self.cold_reason)
        self.reading = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return self.reading is not None and not self.ended

    async def fork(self, env: dict[str, str], cwd: str | None) -> ForkedRun:
        if not self.alive or self.writer is None:
            raise LauncherGone("the launcher is not running")
        request_id = next(self.ids)
        started = self.starting[request_id] = asyncio.get_running_loop().create_future()
        self.writer.write(json.dumps({"id": request_id, "env": env, "cwd": cwd}).encode() + b"\n")
        await self.writer.drain()
        return self.runs[await started]

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while line := await self.reader.readline():
                message = json.loads(line)
                if "started" in message:
                    future = self.starting.pop(message["started"])
                    if "pid" in message:
                        self.runs[message["pid"]] = ForkedRun(message["pid"])
                        future.set_result(message["pid"])
                    else:
                        future.set_exception(LauncherGone(f"the launcher could not fork: {message['error']}"))
                elif "exited" in message:
                    run = self.runs.pop(message["exited"])
                    run.returncode = int(message["status"])
                    run.ended.set()
        finally:
            self.ended = True
            if self.process is not None:
                self.process.poll()  # reaped if it ended
            await self._orphaned()

    async def _orphaned(self) -> None:
        """The launcher ended: requests in flight fail; runs it had started go on (reparented), so wait for them
        to go; their exit status is lost (-1: the worker marks the run Crashed unless it already ended)."""
        for future in self.starting.values():
            if not future.done():
                future.set_exception(LauncherGone("the launcher ended"))
        self.starting.clear()
        while self.runs:
            for pid, run in list(self.runs.items()):
                if not _running(pid):
                    run.returncode = -1
                    run.ended.set()
                    del self.runs[pid]
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)


def bind_wake_socket(path: Path) -> socket.socket:
    """A non-blocking Unix datagram socket at `path`, in a folder only this user may enter; a socket left there by
    a worker that died is replaced."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def file_identity(path: Path) -> tuple[int, int, int]:
    """Tells a file from its successor at the same path (an inode number alone may be reused at once)."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_ctime_ns


def remove_wake_socket(path: Path, identity: tuple[int, int, int]) -> None:
    """Removes the socket file unless another worker has bound that path since (it is another file then)."""
    with contextlib.suppress(OSError):
        if file_identity(path) == identity:
            path.unlink()


def _running(pid: int) -> bool:
    """Exists and is not a zombie (an orphan's new parent may be slow to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class WarmStarter:
    """A Prefect `ProcessStarter`: the run's process is forked by the launcher."""

    def __init__(
        self, launcher: Launcher, configuration: ProcessJobConfiguration, cwd: Path, control: ControlChannel
    ) -> None:
        self.launcher, self.configuration, self.cwd, self.control = launcher, configuration, cwd, control

    def environment(self, flow_run: FlowRun, control_env: dict[str, str]) -> dict[str, str]:
        """As Prefect's engine-command starter builds it: the worker's environment, the job's, the worker's
        Prefect settings (they win), then the run's own variables."""
        env: dict[str, str | None] = {**os.environ, **self.configuration.env}
        env.update(get_current_settings().to_environment_variables(exclude_unset=True))
        env.update(
            {
                "PREFECT__FLOW_RUN_ID": str(flow_run.id),
                "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                **control_env,
                "PREFECT__DEPLOYMENT_NAME": self.configuration.env.get("PREFECT__DEPLOYMENT_NAME"),
            }
        )
        return sanitize_subprocess_env(env)

    async def start(
        self, flow_run: FlowRun, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        control_env: dict[str, str] = {}
        with contextlib.suppress(RuntimeError):  # no loopback listener: cancellation falls back to the kill
            port, token = self.control.register(flow_run.id)
            control_env = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
        try:
            run = await self.launcher.fork(self.environment(flow_run, control_env), str(self.cwd))
        except BaseException as exc:
            if control_env:
                self.control.unregister(flow_run.id)
            if not isinstance(exc, LauncherGone):
                raise
            # The launcher ended meanwhile: this run starts as Prefect's own worker would start it.
            cold = EngineCommandStarter(
                cwd=self.cwd,
                env=self.configuration.env,
                stream_output=self.configuration.stream_output,
                control_channel=self.control,
            )
            await cold.start(flow_run, task_status=task_status)
            return
        task_status.started(ProcessHandle(cast(Any, run), termination_scope=ForkedRunScope(run)))
        await run.ended.wait()


class WarmProcessWorker(ProcessWorker):
    """Prefect's process worker, starting runs from the warm launcher (see the module's docstring)."""

    _description = "certfleet: Prefect's process worker with flow runs forked from a warm launcher"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._launcher: Launcher | None = None
        self._launcher_lock = asyncio.Lock()
        self._poll_lock = asyncio.Lock()
        self._wake_task: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        await super().setup()
        path = os.environ.get(WAKE_ENV)
        if path:
            self._wake_task = asyncio.create_task(self._polls_when_woken(Path(path)))

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        """One poll at a time: Prefect's poll loop and a wake-up never query and submit side by side."""
        async with self._poll_lock:
            return await super().get_and_submit_flow_runs()

    async def _polls_when_woken(self, path: Path) -> None:
        try:
            sock = bind_wake_socket(path)
        except OSError as exc:
            self._logger.warning("this worker only polls: it cannot listen for wake-ups on %s (%s)", path, exc)
            return
        identity = file_identity(path)
        loop = asyncio.get_running_loop()
        try:
            while True:
                await loop.sock_recv(sock, 64)
                with contextlib.suppress(BlockingIOError, InterruptedError):  # one poll answers every wake-up so far
                    while True:
                        sock.recv(64)
                try:
                    await self.get_and_submit_flow_runs()
                except Exception as exc:  # the regular poll goes on; the next wake-up tries again
                    self._logger.warning("a poll on wake-up failed: %s", exc)
        finally:
            sock.close()
            remove_wake_socket(path, identity)

    async def _warm_launcher(self) -> Launcher | None:
        """The running launcher, started (again) if needed; None: start runs as Prefect does."""
        if os.environ.get(WARM_ENV, "1") == "0":
            return None
        async with self._launcher_lock:
            if self._launcher is not None and self._launcher.alive:
                return self._launcher
            if self._launcher is not None and self._launcher.cold_reason is not None:
                return None  # it said why it cannot be warm: do not try again for every run
            self._launcher = Launcher()
            try:
                await self._launcher.start()
            except (LauncherGone, OSError) as exc:
                self._logger.warning("flow runs start as new processes: the warm launcher did not start (%s)", exc)
                if self._launcher.cold_reason is None:
                    self._launcher = None
                return None
            return self._launcher

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        # A job with its own command, or whose output is not to be streamed, starts as Prefect starts it.
        own_start = configuration._command_configured or not configuration.stream_output
        launcher = None if own_start else await self._warm_launcher()
        if launcher is None:
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        # As Prefect's process worker: a temporary working directory unless the job names one.
        with contextlib.ExitStack() as stack:
            if configuration.working_dir:
                cwd = Path(configuration.working_dir)
            else:
                import tempfile

                cwd = Path(stack.enter_context(tempfile.TemporaryDirectory(suffix="prefect")))
            async with FlowRunExecutorContext() as ctx:
                starter = WarmStarter(launcher, configuration, cwd.resolve(), ctx.control_channel)
                executor = ctx.create_executor(
                    flow_run, starter, resolve_flow=load_flow_from_flow_run, propose_submitting=False
                )
                execution: FlowRunExecutionResult | None = None

                async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle]) -> None:
                    nonlocal execution
                    execution = await executor.submit(task_status=task_status)

                async with anyio.create_task_group() as group:
                    handle = await group.start(execute)
                    if handle.pid is None:
                        raise RuntimeError("Flow run process has no PID")
                    task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))

    async def teardown(self, *exc_info: Any) -> None:
        if self._wake_task is not None:
            self._wake_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._wake_task
            self._wake_task = None
        await super().teardown(*exc_info)
        if self._launcher is not None:
            await self._launcher.close()


def main(argv: list[str] | None = None) -> None:
    from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS, PREFECT_WORKER_PREFETCH_SECONDS
    from prefect.utilities.processutils import setup_signal_handlers_worker

    parser = argparse.ArgumentParser(prog="python -m certfleet.deployments.warm_worker")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--work-queue", action="append", dest="queues", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    setup_signal_handlers_worker(os.getpid(), "the certfleet process worker", print)

    async def serve() -> None:
        worker = WarmProcessWorker(
            name=args.name,
            work_pool_name=args.pool,
            work_queues=args.queues,
            limit=args.limit,
            prefetch_seconds=PREFECT_WORKER_PREFETCH_SECONDS.value(),
            heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
        )
        await worker.start(printer=print)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(serve())


if __name__ == "__main__":
    main()

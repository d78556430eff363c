"""The warm launcher: a process that has imported Prefect and certfleet's flows once, and forks each flow run.

A Prefect process worker starts every flow run as a new Python (`python -m prefect.engine`) that imports Prefect
and certfleet first: 2-3 s on an idle machine, several times that on a busy one, most of a deploy's latency
from the click. certfleet's worker (`certfleet.deployments.warm_worker`) starts this launcher once; for each run
it sends the run's id, environment and working directory over a socket, and the launcher forks a child that
runs exactly what `python -m prefect.engine` runs (the engine module as `__main__`, for the flow run id in
PREFECT__FLOW_RUN_ID) with that environment. The parent answers the child's pid at once and its exit status when
it ends; the worker does everything else (Pending, cancellation, Crashed on a non-zero exit) as Prefect's own
process worker does.

Forking is only safe from a process with one thread and no event loop: the launcher imports modules and does
nothing else (it waits on its socket and on the children's pidfds with `selectors`), and it refuses to serve
(answers "cold", and the worker then starts runs as Prefect does) if an import started a thread.

Protocol: one JSON object per line. Launcher: {"ready": true} or {"ready": false, "reason": ...} first; then
{"started": request id, "pid": n} or {"started": request id, "error": ...}, and {"exited": pid, "status": code}
(a negative code is the signal that ended it, as `subprocess` reports it). Worker: {"id": request id,
"env": {...}, "cwd": path or null}. End of input: the launcher exits (running children go on).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

WARM_MODULES = (
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.client.orchestration",
    "prefect._internal.control_listener",
    "prefect.logging.handlers",
    "prefect.deployments.steps.core",  # the deployment's pull steps, run by every flow run
    "prefect.deployments.steps.pull",
    "prefect.utilities.visualization",  # the engine imports it (and graphviz) for every flow
    "prefect._internal.integrations",
    "sqlite3",
    "certfleet.deployments.serve",  # every flow module certfleet's deployments name, and what they import
)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _warm_up() -> str | None:
    """Imports what a flow run imports; returns why forking would be unsafe, or None."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"importing Prefect and certfleet started threads ({names}): forking would be unsafe"
    return None


def _settings_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What Prefect's settings are read from: PREFECT_* (PREFECT__* are the engine's own run variables)."""
    return {k: v for k, v in env.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT__")}


def _exit_status(wait_status: int) -> int:
    return -os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


def serve(sock: socket.socket) -> dict[str, Any] | None:
    """The parent's loop; returns only in a forked child, with the request it must run (None: input ended)."""
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, None)
    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.data is not None:  # a child's pidfd: it ended
                pid = key.data
                selector.unregister(key.fileobj)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                _send(sock, {"exited": pid, "status": _exit_status(status)})
                continue
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    _send(sock, {"started": request["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    for other in list(selector.get_map().values()):
                        if other.data is not None:
                            os.close(other.fd)
                    selector.close()
                    sock.close()
                    return dict(request)
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
                _send(sock, {"started": request["id"], "pid": pid})


def run_child(request: dict[str, Any]) -> None:
    """In the forked child: become what `python -m prefect.engine` would be with this environment, and run it."""
    import runpy
    import warnings

    signal.signal(signal.SIGINT, signal.default_int_handler)
    launcher_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("cwd"):
        os.chdir(request["cwd"])
    sys.argv = [sys.argv[0]]  # the engine reads the flow run id from PREFECT__FLOW_RUN_ID
    # Settings read from the environment at import time are read again if the run's environment changes them
    # (0.2-0.7 s on a busy machine, so not when the job adds nothing to what the worker gave the launcher).
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

    from certfleet.settings import get_settings

    if _settings_environment(os.environ) != _settings_environment(launcher_env):
        refresh_global_settings_context()
        if PROCESS_LOGGING_CONFIG:  # configured while importing: configure it again from the new settings
            PROCESS_LOGGING_CONFIG.clear()
            setup_logging()
    get_settings.cache_clear()
    # runpy warns when the module was imported already (another module imports it); so does `python -m` then.
    warnings.filterwarnings("ignore", r"'prefect\.engine' found in sys\.modules", RuntimeWarning)
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides; its Ctrl-C must not end this process
    sock = socket.socket(fileno=int(sys.argv[1]))
    unsafe = _warm_up()
    if unsafe is not None:
        _send(sock, {"ready": False, "reason": unsafe})
        return
    _send(sock, {"ready": True})
    request = serve(sock)
    if request is not None:  # a forked child: its exit status is the engine's (SystemExit propagates)
        run_child(request)


if __name__ == "__main__":
    main()

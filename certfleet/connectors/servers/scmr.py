"""Restart a Windows service by its Service Name over MS-SCMR (the `svcctl` pipe on the server's SMB session).

The DCE/RPC client is pypsexec's `SCMRApi` on the smbprotocol session `SmbTransport` already holds (one
session per server per run). A restart is: OpenSCManagerW, OpenServiceW (query status, stop, start),
ControlService(STOP) unless already stopped, wait for STOPPED, StartServiceW, wait for RUNNING; each wait
has its own timeout, and every failure says which step and why (unknown service, access denied, a service
that does not stop or does not come back).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from pypsexec.exceptions import SCMRException
from pypsexec.scmr import ControlCode, DesiredAccess, SCMRApi, ScmrReturnValues

from certfleet.connectors.errors import ConnectorError, PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.smb import SmbTransport

# SERVICE_STATUS.dwCurrentState
STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
STATE_NAMES = {1: "STOPPED", 2: "START_PENDING", 3: "STOP_PENDING", 4: "RUNNING", 5: "CONTINUE_PENDING",
               6: "PAUSE_PENDING", 7: "PAUSED"}  # fmt: skip
_SC_MANAGER_CONNECT = 0x0001
_SC_MANAGER_CREATE_SERVICE = 0x0002
_SERVICE_RIGHTS = DesiredAccess.SERVICE_QUERY_STATUS | DesiredAccess.SERVICE_START | DesiredAccess.SERVICE_STOP
_WORDS = {
    ScmrReturnValues.ERROR_ACCESS_DENIED: "access denied: the user may not control services (make it an "
    "administrator of the server)",
    ScmrReturnValues.ERROR_SERVICE_DOES_NOT_EXIST: "no such service",
    ScmrReturnValues.ERROR_SERVICE_DISABLED: "the service is disabled",
    ScmrReturnValues.ERROR_SERVICE_REQUEST_TIMEOUT: "the service did not answer the request in time",
}


@dataclass(frozen=True)
class RestartResult:
    service: str
    stop_ms: float  # from ControlService(STOP) to STOPPED (0 when it was not running)
    start_ms: float  # from StartServiceW to RUNNING


class ServiceControl:
    """The service manager of one Windows server, over its SMB session."""

    def __init__(self, transport: SmbTransport, *, poll_interval: float = 0.1) -> None:
        self.transport = transport
        self.label = transport.label
        self.poll_interval = poll_interval

    def _fail(self, step: str, exc: BaseException, service: str | None = None) -> ConnectorError:
        what = f"service {service!r}: " if service else ""
        if isinstance(exc, SCMRException):
            words = _WORDS.get(exc.return_code, f"{exc.error_msg} ({exc.return_code})")
            return PermanentConnectorError(f"{self.label}: {what}{step} refused: {words}")
        if isinstance(exc, ConnectorError):
            return exc
        return TransientConnectorError(f"{self.label}: {what}{step} failed: {exc}")

    def _api(self) -> SCMRApi:
        session = self.transport.session()
        api: Any = _Timed(SCMRApi(session), self.transport)  # each call waits at most the server's RPC timeout
        try:
            api.open()
        except Exception as exc:
            raise self._fail("opening the service manager (svcctl pipe)", exc) from None
        return api  # type: ignore[no-any-return]

    def check(self, *, create_services: bool = False) -> None:
        """Open the service manager (the connectivity check's last step). `create_services`: with the right to
        create a service, as a PsExec-style run needs (Windows grants it to administrators only)."""
        api = self._api()
        access = _SC_MANAGER_CONNECT | (_SC_MANAGER_CREATE_SERVICE if create_services else 0)
        step = "opening the service manager" + (" with the right to create services" if create_services else "")
        try:
            handle = api.open_sc_manager_w(self.transport.settings.host, None, access)
            api.close_service_handle_w(handle)
        except Exception as exc:
            raise self._fail(step, exc) from None
        finally:
            _close(api)

    def state(self, service: str) -> int:
        api = self._api()
        try:
            scm, svc = self._open(api, service, DesiredAccess.SERVICE_QUERY_STATUS)
            try:
                return int(api.query_service_status(svc)["current_state"].get_value())
            except Exception as exc:
                raise self._fail("querying the status", exc, service) from None
            finally:
                _close_handles(api, svc, scm)
        finally:
            _close(api)

    def _open(self, api: SCMRApi, service: str, rights: int) -> tuple[Any, Any]:
        try:
            scm = api.open_sc_manager_w(self.transport.settings.host, None, _SC_MANAGER_CONNECT)
        except Exception as exc:
            raise self._fail("opening the service manager", exc) from None
        try:
            svc = api.open_service_w(scm, service, rights)
        except Exception as exc:
            _close_handles(api, scm)
            raise self._fail("opening the service", exc, service) from None
        return scm, svc

    def restart(self, service: str, *, stop_timeout: float = 60.0, start_timeout: float = 60.0) -> RestartResult:
        """Stop (unless stopped), wait STOPPED, start, wait RUNNING."""
        api = self._api()
        try:
            scm, svc = self._open(api, service, _SERVICE_RIGHTS)
            try:
                state = self._query(api, svc, service)
                stop_ms = 0.0
                if state != STOPPED:
                    began = time.monotonic()
                    if state != STOP_PENDING:
                        try:
                            api.control_service(svc, ControlCode.SERVICE_CONTROL_STOP)
                        except SCMRException as exc:
                            if exc.return_code != ScmrReturnValues.ERROR_SERVICE_NOT_ACTIVE:
                                raise self._fail("stopping", exc, service) from None
                    self._wait(api, svc, service, STOPPED, stop_timeout, "stop")
                    stop_ms = (time.monotonic() - began) * 1000
                began = time.monotonic()
                try:
                    api.start_service_w(svc)
                except SCMRException as exc:
                    if exc.return_code != ScmrReturnValues.ERROR_SERVICE_ALREADY_RUNNING:
                        raise self._fail("starting", exc, service) from None
                self._wait(api, svc, service, RUNNING, start_timeout, "start")
                return RestartResult(service, stop_ms, (time.monotonic() - began) * 1000)
            finally:
                _close_handles(api, svc, scm)
        finally:
            _close(api)

    def _query(self, api: SCMRApi, svc: Any, service: str) -> int:
        try:
            return int(api.query_service_status(svc)["current_state"].get_value())
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._fail("querying the status", exc, service) from None

    def _wait(self, api: SCMRApi, svc: Any, service: str, wanted: int, timeout: float, verb: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self._query(api, svc, service)
            if state == wanted:
                return
            if verb == "start" and state == STOPPED and time.monotonic() > deadline - timeout + 1.0:
                raise PermanentConnectorError(
                    f"{self.label}: service {service!r} did not come back: it stopped again after StartService "
                    "(see the service's own log on the server)"
                )
            if time.monotonic() >= deadline:
                raise PermanentConnectorError(
                    f"{self.label}: service {service!r} did not {verb} within {timeout:g} s "
                    f"(still {STATE_NAMES.get(state, state)})"
                )
            time.sleep(self.poll_interval)


class _Timed:
    """SCMRApi whose every call runs under the transport's deadline (smbprotocol itself waits without limit)."""

    def __init__(self, api: SCMRApi, transport: SmbTransport) -> None:
        self._api = api
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)
        seconds = self._transport.settings.rpc_timeout

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._transport.deadline(seconds, f"the service manager call {name}"):
                return method(*args, **kwargs)

        return call


def _close_handles(api: SCMRApi, *handles: Any) -> None:
    for handle in handles:
        try:
            api.close_service_handle_w(handle)
        except Exception:  # noqa: S112 - closing is best effort: the session ends anyway
            continue


def _close(api: SCMRApi) -> None:
    with contextlib.suppress(Exception):  # best effort: the session ends anyway
        api.close()

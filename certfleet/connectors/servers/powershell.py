"""Run one of certfleet's PowerShell scripts on a Windows host through a PsExec-style service (pypsexec).

The script is a file of certfleet's (`iis_binding.ps1`); what varies per run never becomes code:
- its input is a JSON object, base64-encoded into the one placeholder `'__CERTFLEET_INPUT__'` (the base64
  alphabet has no quote, `$`, backtick, `;` or newline, so nothing can end the single-quoted literal);
- the whole script goes as `powershell.exe -EncodedCommand <base64 of UTF-16LE>`, so the command line has
  only fixed switches and base64 (nothing for cmd.exe or CreateProcess to split or expand);
- a secret (the PFX password) goes on standard input, never on the command line (which Windows may log).
The script answers one line `CERTFLEET-RESULT <base64 JSON>` (or `CERTFLEET-ERROR ...` and exit code 1).

`RemoteExec` is the pypsexec boundary: `PsExecRunner` is the real one (pypsexec's `Client` on the server's
existing SMB session: PAExec is copied to ADMIN$, a service created, run and removed); tests replace it with
an emulator of the remote result, as no Windows host runs here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError

EXECUTABLE = "powershell.exe"  # Windows PowerShell 5.1: IIS's Microsoft.Web.Administration loads there
SWITCHES = "-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand"
PLACEHOLDER = "'__CERTFLEET_INPUT__'"
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_MARKER = re.compile(r"^CERTFLEET-(RESULT|ERROR) ([A-Za-z0-9+/]*={0,2})\s*$", re.MULTILINE)
# CreateProcess takes at most 32,767 characters; leave room for the executable's path
MAX_COMMAND_LINE = 32_000


def template(name: str) -> str:
    """A script shipped with certfleet (certfleet/connectors/servers/NAME)."""
    text = resources.files("certfleet.connectors.servers").joinpath(name).read_text("utf-8")
    if text.count(PLACEHOLDER) != 1:
        raise AssertionError(f"{name} must hold the placeholder {PLACEHOLDER} exactly once")
    return text


def script_with(script_template: str, data: dict[str, Any]) -> str:
    """The script with its input: the JSON of `data`, base64, in the one single-quoted placeholder. Comment
    lines and indentation are left out (the command line is limited; certfleet's scripts hold no here-strings)."""
    blob = base64.b64encode(json.dumps(data, ensure_ascii=False).encode("utf-8")).decode("ascii")
    lines = (line.strip() for line in script_template.splitlines())
    compact = "\n".join(line for line in lines if line and not line.startswith("#"))
    return compact.replace(PLACEHOLDER, f"'{blob}'", 1)


def arguments(script: str) -> str:
    """powershell.exe's arguments for a script: fixed switches and base64 (UTF-16LE, as -EncodedCommand takes)."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    line = f"{SWITCHES} {encoded}"
    if len(line) + len(EXECUTABLE) + 1 > MAX_COMMAND_LINE:
        raise PermanentConnectorError(
            f"the PowerShell command would be {len(line)} characters, more than Windows accepts ({MAX_COMMAND_LINE})"
        )
    return line


def secret_line(value: str) -> bytes:
    """A secret for the script's standard input: base64 of its UTF-8, one line."""
    return base64.b64encode(value.encode("utf-8")) + b"\r\n"


def decode_arguments(line: str) -> tuple[str, dict[str, Any]]:
    """The script and its input back from a command line (what the host runs; used by tests and emulators)."""
    if not line.startswith(SWITCHES + " "):
        raise ValueError("not a certfleet PowerShell command line")
    encoded = line[len(SWITCHES) + 1 :]
    if not _B64.fullmatch(encoded):
        raise ValueError("the encoded command is not base64")
    script = base64.b64decode(encoded).decode("utf-16-le")
    found = re.search(r"^\$CertfleetInput = '([A-Za-z0-9+/]*={0,2})'$", script, re.MULTILINE)
    if found is None:
        raise ValueError("the script carries no input")
    data = json.loads(base64.b64decode(found.group(1)).decode("utf-8"))
    return script, data


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class RemoteExec(Protocol):
    """Runs a program on the Windows host (pypsexec's `Client.run_executable`, reduced to what certfleet uses)."""

    def run_executable(self, executable: str, arguments: str, stdin: bytes | None, timeout: float) -> ExecResult: ...


def run_script(
    runner: RemoteExec, where: str, what: str, script: str, *, stdin: bytes | None = None, timeout: float = 120.0
) -> dict[str, Any]:
    """Run a certfleet script and return its result object; a failure says where, what and the script's reason."""
    result = runner.run_executable(EXECUTABLE, arguments(script), stdin, timeout)
    out = result.stdout.decode("utf-8", "replace")
    markers = _MARKER.findall(out)
    if markers:
        kind, blob = markers[-1]
        try:
            value = json.loads(base64.b64decode(blob).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
            value = None
        if kind == "ERROR" and isinstance(value, dict):
            raise PermanentConnectorError(f"{where}: {what} failed: {value.get('message') or 'no reason given'}")
        if kind == "RESULT" and isinstance(value, dict) and result.exit_code == 0:
            return value
    tail = " | ".join((result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()[-3:])
    raise PermanentConnectorError(
        f"{where}: {what}: powershell.exe exited with code {result.exit_code} without a result"
        + (f": {tail}" if tail else "")
    )


class PsExecRunner:
    """pypsexec on the server's SMB session: PAExec is copied to ADMIN$, run as a service created through the
    service manager, and removed again after each program. Needs an administrator (ADMIN$ and service creation)."""

    def __init__(self, smb: Any) -> None:  # an SmbTransport (imported lazily: smbprotocol is heavy)
        self.smb = smb

    def run_executable(self, executable: str, arguments: str, stdin: bytes | None, timeout: float) -> ExecResult:
        from pypsexec.client import Client
        from pypsexec.exceptions import PypsexecException
        from pypsexec.scmr import Service
        from smbprotocol.exceptions import SMBException

        settings = self.smb.settings
        with self.smb._lock:  # one PAExec service name per process: one program at a time on a server
            session = self.smb.session()
            client = Client(settings.host, username=settings.username, password=settings.password, port=settings.port)
            client.connection = session.connection  # the session certfleet already holds (no second login)
            client.session = session
            client._service = Service(client.service_name, session)
            step = "opening the service manager"
            # PAExec ends the program at `timeout`; the service's set-up and removal get the RPC timeout each
            limit = timeout + 4 * settings.rpc_timeout
            try:
                with self.smb.deadline(limit, f"running {executable} through a PsExec-style service"):
                    client._service.open()
                    step = "creating the PsExec service (ADMIN$ and the service manager)"
                    created = False
                    try:
                        client.create_service()
                        created = True
                        step = f"running {executable}"
                        stdout, stderr, rc = client.run_executable(
                            executable, arguments=arguments, stdin=stdin, timeout_seconds=max(1, int(timeout))
                        )
                    finally:  # also after a failed creation: PAExec may already have been copied to ADMIN$
                        failed_step, step = step, "removing the PsExec service"
                        try:
                            client.remove_service()
                        except Exception:
                            if created:
                                raise
                        step = failed_step
            except PypsexecException as exc:
                raise PermanentConnectorError(f"{self.smb.label}: {step}: {exc}") from None
            except SMBException as exc:
                raise TransientConnectorError(f"{self.smb.label}: {step}: {exc}") from None
            finally:
                with contextlib.suppress(Exception):  # the service handle goes with the session anyway
                    client._service.close()
        return ExecResult(stdout or b"", stderr or b"", int(rc))

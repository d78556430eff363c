"""certfleet's IIS PowerShell script gets its values as data that cannot become code.

No PowerShell runs here (pwsh is not installable from this machine's registries), so these tests check what
reaches the host: the command line is fixed switches plus base64, the script is the template with only its
input blob filled in (base64 inside single quotes), no value appears in either as it was given, the secret
goes on standard input only, and everything decodes back exactly.
"""

from __future__ import annotations

import base64
import re

import pytest

from certfleet.connectors.errors import PermanentConnectorError
from certfleet.connectors.servers import powershell
from certfleet.connectors.servers.iis import SCRIPT

NASTY = [
    "Default Web Site",
    "it's a 'site'",
    'say "hi"',
    "$env:COMPUTERNAME $(Remove-Item C:\\ -Recurse)",
    "back`tick`$x",
    "a; Stop-Computer -Force; '",
    "line1\nline2\r\n'; exit 0 #",
    "Ünïcødé Site — 網站 \u202e",
    "'@\n\"@\n",  # here-string terminators
    "%PATH% ^& | > nul",  # cmd.exe's own metacharacters
]


def _template() -> str:
    return powershell.template(SCRIPT)


@pytest.mark.parametrize("value", NASTY)
def test_a_value_with_quotes_dollars_backticks_semicolons_newlines_or_unicode_stays_data(value: str) -> None:
    data = {"op": "apply", "site": value, "port": 443, "thumbprint": "AB" * 20, "pfx": f"C:\\certs\\{value}.pfx"}
    script = powershell.script_with(_template(), data)
    line = powershell.arguments(script)

    # the command line: fixed switches, then base64 only (nothing cmd.exe or CreateProcess could split or expand)
    assert re.fullmatch(re.escape(powershell.SWITCHES) + r" [A-Za-z0-9+/]+={0,2}", line)
    # the script: the template (comments and indentation left out) with one line changed, to base64 in quotes
    compact = powershell.script_with(_template(), {}).splitlines()
    lines = script.splitlines()
    assert len(lines) == len(compact)
    changed = [(a, b) for a, b in zip(compact, lines, strict=True) if a != b]
    assert len(changed) == 1
    assert re.fullmatch(r"\$CertfleetInput = '[A-Za-z0-9+/]+={0,2}'", changed[0][1])
    # the value appears nowhere as given, and comes back exactly
    for part in (value, data["pfx"]):
        assert part not in script
        assert part not in line
    assert powershell.decode_arguments(line) == (script, data)


def test_the_template_holds_its_placeholder_once_and_reads_its_input_only_by_decoding_it() -> None:
    text = _template()
    assert text.count(powershell.PLACEHOLDER) == 1
    uses = re.findall(r"\$CertfleetInput\b.*", text)
    assert uses == [
        "$CertfleetInput = '__CERTFLEET_INPUT__'",
        "$CertfleetInput)) | ConvertFrom-Json",
    ]
    assert "Invoke-Expression" not in text
    assert "iex " not in text.lower()


def test_the_pfx_password_goes_on_standard_input_never_on_the_command_line() -> None:
    password = "p@ss'w\"o$rd`;\nü"
    line = powershell.secret_line(password)
    assert line.endswith(b"\r\n")
    assert b"\n" not in line[:-2]
    assert base64.b64decode(line.strip()).decode() == password
    script = powershell.script_with(_template(), {"op": "apply", "site": "s", "port": 443, "thumbprint": "A"})
    assert password not in powershell.arguments(script)


def test_a_command_line_too_long_for_windows_is_refused_with_its_length() -> None:
    huge = {
        "op": "apply",
        "site": "s",
        "undo": {"bindings": [{"info": f"*:443:h{i}.example.test"} for i in range(2000)]},
    }
    with pytest.raises(PermanentConnectorError, match="more than Windows accepts"):
        powershell.arguments(powershell.script_with(_template(), huge))


class _Answer:
    def __init__(self, stdout: bytes, stderr: bytes, code: int) -> None:
        self.result = powershell.ExecResult(stdout, stderr, code)
        self.seen: tuple[str, str, bytes | None] | None = None

    def run_executable(
        self, executable: str, arguments: str, stdin: bytes | None, timeout: float
    ) -> powershell.ExecResult:
        self.seen = (executable, arguments, stdin)
        return self.result


def _marker(kind: str, value: object) -> bytes:
    import json

    return f"noise\r\nCERTFLEET-{kind} {base64.b64encode(json.dumps(value).encode()).decode()}\r\n".encode()


def test_the_scripts_result_error_and_a_dead_process_are_told_apart() -> None:
    script = powershell.script_with(_template(), {"op": "inspect"})
    ok = _Answer(_marker("RESULT", {"bindings": []}), b"", 0)
    assert powershell.run_script(ok, "IIS site 's'", "reading", script) == {"bindings": []}
    assert ok.seen is not None
    assert ok.seen[0] == "powershell.exe"
    assert ok.seen[2] is None

    refused = _Answer(_marker("ERROR", {"message": "IIS has no site named 'x'"}), b"", 1)
    with pytest.raises(PermanentConnectorError, match="IIS site 's': reading failed: IIS has no site named 'x'"):
        powershell.run_script(refused, "IIS site 's'", "reading", script)

    dead = _Answer(b"", b"Add-Type : Could not load file\r\nat line 1\r\n", 1)
    with pytest.raises(PermanentConnectorError, match="exited with code 1 without a result: Add-Type : Could not"):
        powershell.run_script(dead, "IIS site 's'", "reading", script)

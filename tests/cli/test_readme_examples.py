"""The README's commands and examples, run as written against one fresh `certfleet up` (issue 11 #13).

The examples are read out of README.md, so an example that changes is tested as changed, and one that stops
working on a fresh install fails here: the curl lines of "Dashboard and API" (with a real API token for
`$TOKEN` and the test's dashboard port for 8080) and the `certfleet` lines of "What it does".
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import httpx

from certfleet.deployments.api import auth_headers
from tests.cli.test_cli import CERTFLEET, Up, _env, _statuses, admin_api_token, assert_healthy, running_up

__all__ = ["running_up"]  # the one `certfleet up` fixture, shared with test_cli.py

README = Path(__file__).parents[2] / "README.md"


def section(title: str) -> str:
    """The text of the README section `## title`, up to the next `## `."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def bash_commands(text: str, program: str) -> list[str]:
    """The commands of the ```bash blocks in `text` that start with `program`, continuation lines joined and
    comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(program):
                commands.append(re.sub(r"\s+#.*$", "", line))
    return commands


def test_the_examples_are_found() -> None:
    # A guard for the parser itself: if the README's layout changes, this says so instead of testing nothing.
    assert len(bash_commands(section("Dashboard and API"), "curl ")) == 3
    assert len(bash_commands(section("What it does"), "uv run certfleet ")) == 6


def _curl(up: Up, command: str, token: str, cwd: Path) -> tuple[int, str]:
    assert command.startswith("curl ")
    line = command.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{up.dashboard_port}")
    # The README's own command, run by bash with $TOKEN set; -sS and -w only add the status code to the output.
    done = subprocess.run(
        ["bash", "-c", "curl -sS -w '\\n%{http_code}' " + line[len("curl ") :]],
        env={"TOKEN": token, "PATH": "/usr/bin:/bin"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def _check_curl_examples(up: Up, token: str, cwd: Path) -> None:
    for command in bash_commands(section("Dashboard and API"), "curl "):
        status, body = _curl(up, command, token, cwd)
        assert 200 <= status < 300, (command, status, body)
        args = shlex.split(command)
        if "-o" in args:  # an export: a real workbook with a header row and the demo fleet's rows
            out = cwd / args[args.index("-o") + 1]
            with zipfile.ZipFile(out) as xlsx:
                sheet = xlsx.read("xl/worksheets/sheet1.xml").decode()
            assert "CN / SAN Name" in sheet or "CN / SAN Name" in xlsx_strings(out), command
            assert sheet.count("<row") >= 1 + 3, (command, sheet[:500])  # header + the 3 demo certificates
            assert "demo.certfleet.test" in sheet + xlsx_strings(out)
            continue
        answer = json.loads(body)
        if "items" in answer:  # a list: it found something, and its total is its rows
            assert answer["items"], (command, answer)
            assert answer["total"] == len(answer["items"])
            if "/bots" in command:
                assert [b["name"] for b in answer["items"]] == ["local-bot"]
        else:  # a started run: Prefect knows it
            assert status == 202
            assert answer["flow_run_id"], answer


def xlsx_strings(path: Path) -> str:
    with zipfile.ZipFile(path) as xlsx:
        names = xlsx.namelist()
        return xlsx.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in names else ""


def _check_cli_examples(up: Up) -> None:
    env = _env(up.data_dir, CERTFLEET_PREFECT_PORT=str(up.port))
    for command in bash_commands(section("What it does"), "uv run certfleet "):
        args = shlex.split(command)[len(("uv", "run", "certfleet")) :]
        done = subprocess.run([CERTFLEET, *args], env=env, capture_output=True, text=True, timeout=240, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, (command, output)
        assert "Traceback" not in output
        assert output.strip(), command  # each says what it did
        if args == ["certificates"]:
            assert output.count("demo.certfleet.test") >= 3, output
        elif "--no-wait" in args:
            assert "Completed" not in output  # started, not waited for
        elif args[0] in ("provision", "deploy", "rollback", "renew"):
            assert "Completed" in output, (command, output)
        if args[0] == "renew":  # the demo's certificates were just issued: none is renewed (Renewal policy)
            with sqlite3.connect(up.data_dir / "certfleet.db") as db:
                assert db.execute("SELECT count(*) FROM certificates WHERE renewal_attempts > 0").fetchone()[0] == 0


def test_readme_examples_work_on_a_fresh_up(running_up: Up, tmp_path: Path) -> None:
    up = running_up
    deadline = time.monotonic() + 240  # the demo fleet is provisioned first: the examples speak of it
    while time.monotonic() < deadline and _statuses(up.data_dir / "certfleet.db") != ["Deployed"] * 3:
        time.sleep(1)
    assert _statuses(up.data_dir / "certfleet.db") == ["Deployed"] * 3
    token = admin_api_token(up.data_dir)
    # The command-line examples first: their deployment ids ("rollback 4") are those of a fresh install.
    _check_cli_examples(up)
    _wait_for_runs(up)
    _check_curl_examples(up, token, tmp_path)
    _check_refusals_the_readme_quotes(up, token)
    with sqlite3.connect(up.data_dir / "certfleet.db") as db:
        assert db.execute("SELECT count(*) FROM deployments").fetchone()[0] >= 5
    _wait_for_runs(up)  # the provision run the curl example started, before `up` is stopped
    assert_healthy(up.console)


def _wait_for_runs(up: Up) -> None:
    """Until no flow run is pending or running in Prefect."""
    body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = httpx.post(f"{up.api}/flow_runs/filter", json=body, headers=auth_headers(up.auth_string), timeout=10)
        assert runs.status_code == 200, runs.text
        if not runs.json():
            return
        time.sleep(1)
    raise AssertionError("flow runs still under way after 240 s")


def _check_refusals_the_readme_quotes(up: Up, token: str) -> None:
    """ "Bad input is refused field by field (...)": the messages quoted in the Servers section."""
    text = section("Servers: deploying over SSH")
    quoted = re.search(r'a port of 70000: "([^"]+)", no path for nginx: "([^"]+)"', text)
    assert quoted, "the Servers section no longer quotes its refusals"
    port_message, path_message = (" ".join(q.split()) for q in quoted.groups())  # joined across README lines
    bearer = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{up.dashboard_port}/api/v1/servers"
    server = {"description": "readme", "ip_address": "192.0.2.10", "username": "deploy", "password": "secret-password",
              "server_type": "nginx", "nginx_path": "/etc/nginx/", "ports": [443]}  # fmt: skip
    bad_port = httpx.post(url, json={**server, "ports": [70000]}, headers=bearer, timeout=30, trust_env=False)
    assert bad_port.status_code == 422
    assert port_message in bad_port.json()["detail"]
    assert bad_port.json()["field"].startswith("ports")
    no_path = {k: v for k, v in server.items() if k != "nginx_path"}
    missing = httpx.post(url, json=no_path, headers=bearer, timeout=30, trust_env=False)
    assert missing.status_code == 422
    assert path_message in missing.json()["detail"]

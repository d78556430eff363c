"""The scan in a child process: the same results as in-process, and a child that fails says so."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from certfleet.demo.listener import free_port
from certfleet.discovery import scan_process
from certfleet.discovery.scan_process import ScanProcessError, scan_in_process
from certfleet.discovery.scanner import ScanOptions, ScanResult, scan_sync
from certfleet.discovery.targets import Endpoint
from tests.discovery.certs import NAMES, Served
from tests.discovery.fixtures import VHOST, Farm


def ep(port: int, sni: str | None = None, host: str = "127.0.0.1") -> Endpoint:
    return Endpoint(host, "127.0.0.1", port, sni)


def by_place(results: list[ScanResult]) -> dict[tuple[int, str | None], tuple[tuple[bytes, ...], str | None]]:
    return {(r.endpoint.port, r.endpoint.sni): (r.chain, r.error) for r in results}


def test_same_results_as_scanning_in_process(farm: Farm, fleet: dict[str, Served]) -> None:
    endpoints = [ep(farm.ports[n]) for n in NAMES] + [ep(farm.vhost, VHOST), ep(farm.vhost), ep(free_port())]
    seen: list[ScanResult] = []
    results = scan_in_process(endpoints, ScanOptions(concurrency=4), seen.append)
    assert by_place(results) == by_place(scan_sync(endpoints, ScanOptions(concurrency=4)))
    assert seen == results  # handed over one by one, as they completed
    assert by_place(results)[(endpoints[-1].port, None)] == ((), "connection refused")
    assert sum(1 for r in results if r.chain) == len(NAMES) + 2  # every listener, the virtual host twice


def test_results_keep_the_endpoint_as_given(farm: Farm) -> None:
    """The child only sees addresses; the host name the user wrote comes back with each result."""
    (result,) = scan_in_process([ep(farm.ports["good"], host="www.example.test")])
    assert result.endpoint == ep(farm.ports["good"], host="www.example.test")
    assert result.chain


def test_nothing_to_scan_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_process, "child_command", lambda: pytest.fail("a process was started"))
    assert scan_in_process([]) == []


@pytest.fixture(autouse=True)
def no_spares() -> Iterator[None]:
    """Each test starts without spare scan processes (an earlier one may have left them) and leaves none."""
    scan_process.close_spares()
    yield
    scan_process.close_spares()


def _child(monkeypatch: pytest.MonkeyPatch, code: str) -> list[subprocess.Popen[bytes]]:
    """Replace the scan process with `code`; returns the list the started process is put in."""
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = popen(*args, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(scan_process, "child_command", lambda: [sys.executable, "-c", code])
    monkeypatch.setattr(scan_process.subprocess, "Popen", recording_popen)
    return started


def test_a_child_that_dies_fails_the_scan_with_its_words(monkeypatch: pytest.MonkeyPatch) -> None:
    _child(monkeypatch, "import sys; sys.stdin.read(); sys.stderr.write('out of memory, say\\n'); sys.exit(3)")
    with pytest.raises(ScanProcessError, match=r"status 3 after 0 of 2 endpoints: out of memory, say"):
        scan_in_process([ep(1), ep(2)])


def test_a_result_stream_cut_mid_frame_fails_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # One whole error frame for endpoint 0, then half a header: exit status 0 does not make it complete.
    frame = "b'\\x00\\x00\\x00\\x00\\x01\\x00\\x04nope' + b'\\x00\\x00'"
    _child(monkeypatch, f"import sys; sys.stdin.read(); sys.stdout.buffer.write({frame})")
    seen: list[ScanResult] = []
    with pytest.raises(ScanProcessError, match=r"status 0 after 1 of 2 endpoints"):
        scan_in_process([ep(1), ep(2)], on_result=seen.append)
    assert [(r.endpoint.port, r.error) for r in seen] == [(1, "nope")]


def test_a_frame_for_an_unknown_endpoint_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _child(monkeypatch, "import sys; sys.stdin.read(); sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x07\\x01\\x00\\x00')")
    with pytest.raises(ScanProcessError, match="reported endpoint 7 of 1"):
        scan_in_process([ep(1)])


def test_a_failing_caller_stops_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """When recording fails mid-scan the handshakes stop too: no orphan keeps scanning."""
    started = _child(
        monkeypatch,
        "import sys, time; sys.stdin.read(); sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x00\\x01\\x00\\x00');"
        " sys.stdout.flush(); time.sleep(600)",
    )

    def refuse(result: ScanResult) -> None:
        raise RuntimeError("the database is gone")

    with pytest.raises(RuntimeError, match="the database is gone"):
        scan_in_process([ep(1), ep(2)], on_result=refuse)
    (child,) = started
    assert child.poll() is not None  # killed and reaped, not left sleeping


def test_an_endpoint_the_protocol_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="space in the SNI name"):
        scan_in_process([ep(1, sni="bad name")])


def test_options_are_checked_before_any_scan() -> None:
    with pytest.raises(ValueError, match="concurrency 0 must be between 1 and 20000"):
        ScanOptions(concurrency=0)
    with pytest.raises(ValueError, match="handshake timeout 0 s must be above 0"):
        ScanOptions(handshake_timeout=0)


def test_a_prestarted_process_does_the_next_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    scan_process.prestart(1)
    started = _child(monkeypatch, "raise SystemExit('not this one')")
    (result,) = scan_in_process([ep(free_port())])
    assert result.error == "connection refused"
    assert started == []  # the spare, started before, did the scan


def test_a_spare_that_died_is_replaced() -> None:
    scan_process.prestart(1)
    (spare,) = scan_process._spares
    spare.process.kill()
    spare.process.wait()
    (result,) = scan_in_process([ep(free_port())])
    assert result.error == "connection refused"

"""Run the handshakes of a scan in a child process, so they get a core (and a GIL) of their own.

A scan is CPU-bound on the client side (with OpenSSL 3.0 a handshake costs the client more than 1 ms),
and the process that records what it finds also parses certificates and writes the database. In one
process both wait for the same GIL; here the child (`python -m certfleet.discovery.scan_process`) only
scans, and the parent reads its results as they complete and records them.

The child starts light (this module and `scanner` import neither pydantic nor certfleet's models) and
speaks a small protocol over its pipes:

- stdin: one line of JSON (the scan options), then one endpoint per line: "ip port sni" ('-' for none);
- stdout: one frame per endpoint, in completion order: a header ``!IBH`` (endpoint index, 0 for a chain or
  1 for an error, number of certificates or length of the error text), then each certificate as ``!I``
  length + DER, or the error text in UTF-8.

A child that dies, or a result stream that stops short, fails the scan with the child's own words.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, BinaryIO

from certfleet.discovery.scanner import ScanOptions, ScanResult, scan_sync
from certfleet.discovery.targets import Endpoint

_HEADER = struct.Struct("!IBH")
_LENGTH = struct.Struct("!I")
_CHAIN, _ERROR = 0, 1
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds the certfleet package


def child_command() -> list[str]:
    return [sys.executable, "-m", "certfleet.discovery.scan_process"]


class ScanProcessError(RuntimeError):
    """The scan process failed; the message carries its exit status and the end of what it printed."""


# --- the child ---------------------------------------------------------------------------------------------


def _write_result(out: BinaryIO, index: int, result: ScanResult) -> None:
    if result.chain:
        parts = [_HEADER.pack(index, _CHAIN, len(result.chain))]
        for der in result.chain:
            parts += [_LENGTH.pack(len(der)), der]
    else:
        text = (result.error or "no certificate").encode("utf-8", "replace")[:65535]
        parts = [_HEADER.pack(index, _ERROR, len(text)), text]
    out.write(b"".join(parts))
    out.flush()  # the parent records while the scan goes on


def child_main(stdin: BinaryIO, stdout: BinaryIO) -> None:
    first = stdin.readline()
    if not first:
        return  # a spare that was never used: its parent is done
    options = ScanOptions(**json.loads(first))
    endpoints = []
    for line in stdin.read().decode("utf-8").splitlines():
        ip, port, sni = line.split(" ")
        endpoints.append(Endpoint(ip, ip, int(port), None if sni == "-" else sni))
    index = {id(endpoint): n for n, endpoint in enumerate(endpoints)}
    scan_sync(endpoints, options, lambda result: _write_result(stdout, index[id(result.endpoint)], result))


# --- the parent --------------------------------------------------------------------------------------------


def _request(endpoints: Sequence[Endpoint], options: ScanOptions) -> bytes:
    lines = [json.dumps(asdict(options))]
    for endpoint in endpoints:
        if " " in (endpoint.sni or "") or not endpoint.ip:
            raise ValueError(f"cannot scan {endpoint.where()}: no address, or a space in the SNI name")
        lines.append(f"{endpoint.ip} {endpoint.port} {endpoint.sni or '-'}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _read_results(
    stream: IO[bytes],
    endpoints: Sequence[Endpoint],
    on_result: Callable[[ScanResult], None] | None,
    results: list[ScanResult],
) -> None:
    while len(results) < len(endpoints):
        header = stream.read(_HEADER.size)
        if not header:
            break
        if len(header) != _HEADER.size:
            raise EOFError
        index, kind, count = _HEADER.unpack(header)
        if index >= len(endpoints):
            raise ScanProcessError(f"the scan process reported endpoint {index} of {len(endpoints)}")
        if kind == _CHAIN:
            chain = tuple(_read_exact(stream, _LENGTH.unpack(_read_exact(stream, 4))[0]) for _ in range(count))
            result = ScanResult(endpoints[index], chain, None)
        else:
            result = ScanResult(endpoints[index], (), _read_exact(stream, count).decode("utf-8", "replace"))
        results.append(result)
        if on_result is not None:
            on_result(result)


class _Child:
    """A started scan process: waiting for its request on stdin, its stderr going to a file (a chatty child
    cannot block on a file as it could on a pipe)."""

    def __init__(self) -> None:
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(), after the process is reaped
        root = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            env={**os.environ, "PYTHONPATH": root},
        )

    def said(self) -> list[str]:
        self.errors.seek(0)
        return self.errors.read().decode("utf-8", "replace").strip().splitlines()[-5:]

    def close(self) -> None:
        """Stop it if it still runs (an unused spare reads end-of-input and leaves), and reap it."""
        process = self.process
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self.errors.close()


_spares: list[_Child] = []
_spares_lock = threading.Lock()


def prestart(count: int) -> None:
    """Start up to `count` scan processes now: a start costs ~0.2 s (Python, asyncio, ssl), which then
    overlaps the caller's planning and Prefect's task setup instead of delaying the first handshake."""
    with _spares_lock:
        while len(_spares) < count:
            _spares.append(_Child())


def _take() -> _Child:
    with _spares_lock:
        while _spares:
            child = _spares.pop()
            if child.process.poll() is None:
                return child
            child.close()  # died while waiting (killed, say): start another
    return _Child()


@atexit.register
def close_spares() -> None:
    """Stop the spare scan processes (at exit, or when the scan command changes)."""
    with _spares_lock:
        for child in _spares:
            child.close()
        _spares.clear()


def scan_in_process(
    endpoints: Sequence[Endpoint],
    options: ScanOptions | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """`scanner.scan_sync` in a child process: the same results, `on_result` called in this thread."""
    options = options or ScanOptions()
    if not endpoints:
        return []
    request = _request(endpoints, options)
    child = _take()
    stdin, stdout = child.process.stdin, child.process.stdout
    assert stdin is not None  # both are pipes, as asked
    assert stdout is not None
    results: list[ScanResult] = []
    try:
        with contextlib.suppress(BrokenPipeError):  # it died at start: its status and stderr say why, below
            stdin.write(request)  # the child reads all of it before it writes anything
            stdin.close()
        with contextlib.suppress(EOFError):  # cut off mid-frame: reported with the exit status below
            _read_results(stdout, endpoints, on_result, results)
        status = child.process.wait()
        if status != 0 or len(results) != len(endpoints):
            said = child.said()
            raise ScanProcessError(
                f"the scan process exited with status {status} after {len(results)} of {len(endpoints)} endpoints"
                + (": " + " | ".join(said) if said else "")
            )
    finally:
        if child.process.poll() is None:  # the caller failed or was cancelled: stop the handshakes too
            child.process.kill()
        child.close()
    return results


if __name__ == "__main__":
    child_main(sys.stdin.buffer, sys.stdout.buffer)

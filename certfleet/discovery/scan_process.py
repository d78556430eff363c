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

import contextlib
import json
import os
import struct
import subprocess
import sys
import tempfile
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
    options = ScanOptions(**json.loads(stdin.readline()))
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block on it
        child = subprocess.Popen(
            child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        stdin, stdout = child.stdin, child.stdout
        assert stdin is not None  # both are pipes, as asked
        assert stdout is not None
        results: list[ScanResult] = []
        try:
            with contextlib.suppress(BrokenPipeError):  # it died at start: its status and stderr say why, below
                stdin.write(request)  # the child reads all of it before it writes anything
                stdin.close()
            with contextlib.suppress(EOFError):  # cut off mid-frame: reported with the exit status below
                _read_results(stdout, endpoints, on_result, results)
            status = child.wait()
        finally:
            if child.poll() is None:  # the caller failed or was cancelled: stop the handshakes too
                child.kill()
                child.wait()
            stdout.close()
        if status != 0 or len(results) != len(endpoints):
            errors.seek(0)
            said = errors.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ScanProcessError(
                f"the scan process exited with status {status} after {len(results)} of {len(endpoints)} endpoints"
                + (": " + " | ".join(said) if said else "")
            )
    return results


if __name__ == "__main__":
    child_main(sys.stdin.buffer, sys.stdout.buffer)

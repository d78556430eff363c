"""Many TLS listeners on loopback with few processes: the stand-in network for discovery tests and benchmarks.

One child process serves up to a few hundred listening sockets from a single asyncio loop, each socket
with its own certificate chain (and, optionally, other chains chosen by SNI). A thousand listeners are
ten processes and a thousand file descriptors, not a thousand processes, so they fit two cores and the
descriptor limit. Each connection is closed right after the handshake: a scanner only needs the chain.

Command line (what `TlsFarm` runs)::

    python -m certfleet.discovery.testbed serve --config group.json --ready ready.json

The child imports only the standard library, so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from certfleet.discovery.fdlimit import raise_fd_limit

MODULE = "certfleet.discovery.testbed"
LISTENERS_PER_PROCESS = 100


@dataclass(frozen=True)
class ListenerSpec:
    """One listening socket: the chain it serves (PEM, leaf first) and its key; `sni` maps names to others."""

    cert_file: str
    key_file: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: the kernel picks a free port, reported back by `TlsFarm.endpoints`
    sni: dict[str, tuple[str, str]] = field(default_factory=dict)  # server name -> (cert_file, key_file)


class FarmStartError(RuntimeError):
    """A child process died or never became ready; the message carries its stderr."""


# --- child ----------------------------------------------------------------------------------------------


class _CloseAfterHandshake(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL:@SECLEVEL=0")  # serve RSA-1024 and SHA-1 certificates, as old servers do
    context.load_cert_chain(cert_file, key_file)
    return context


def _with_sni(default: ssl.SSLContext, by_name: dict[str, ssl.SSLContext]) -> ssl.SSLContext:
    def pick(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = by_name.get((server_name or "").lower())
        if chosen is not None:
            sslobj.context = chosen

    if by_name:
        default.sni_callback = pick
    return default


async def _serve(specs: list[ListenerSpec], ready: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    ports = []
    for spec in specs:
        context = _with_sni(
            _context(spec.cert_file, spec.key_file),
            {name.lower(): _context(*files) for name, files in spec.sni.items()},
        )
        sock = socket.create_server((spec.host, spec.port), backlog=512)
        servers.append(await loop.create_server(_CloseAfterHandshake, sock=sock, ssl=context))
        ports.append(sock.getsockname()[1])
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "ports": ports}))
    os.replace(tmp, ready)
    await stop.wait()
    for server in servers:
        server.close()


def _load_specs(path: Path) -> list[ListenerSpec]:
    specs = []
    for item in json.loads(path.read_text()):
        item["sni"] = {name: tuple(files) for name, files in item.get("sni", {}).items()}
        specs.append(ListenerSpec(**item))
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the listeners in a JSON file until SIGTERM")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args(argv)
    specs = _load_specs(args.config)
    raise_fd_limit(len(specs) * 4 + 256)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(specs, args.ready))
    return 0


# --- parent ---------------------------------------------------------------------------------------------


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    ready: Path
    log: Path
    count: int


class TlsFarm:
    """Start with `TlsFarm(specs, workdir)` as a context manager; `endpoints` lists (host, port) in spec order."""

    def __init__(
        self,
        specs: Sequence[ListenerSpec],
        workdir: Path,
        *,
        per_process: int = LISTENERS_PER_PROCESS,
        ready_timeout: float = 60.0,
    ) -> None:
        self.specs = list(specs)
        self.workdir = Path(workdir)
        self.per_process = per_process
        self.ready_timeout = ready_timeout
        self.endpoints: list[tuple[str, int]] = []
        self._children: list[_Child] = []

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        raise_fd_limit(len(self.specs) * 4 + 1024)
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        for number, first in enumerate(range(0, len(self.specs), self.per_process)):
            group = self.specs[first : first + self.per_process]
            config = self.workdir / f"farm-{number}.json"
            config.write_text(json.dumps([asdict(spec) for spec in group]))
            ready = self.workdir / f"farm-{number}.ready"
            ready.unlink(missing_ok=True)
            log = self.workdir / f"farm-{number}.log"
            with log.open("wb") as err:
                process = subprocess.Popen(
                    [sys.executable, "-m", MODULE, "serve", "--config", str(config), "--ready", str(ready)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                )
            self._children.append(_Child(process, ready, log, len(group)))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        for child in self._children:
            while not child.ready.exists():
                status = child.process.poll()
                if status is not None or time.monotonic() > deadline:
                    text = child.log.read_text(errors="replace").strip() or "(no output)"
                    why = f"exited with status {status}" if status is not None else "was not ready in time"
                    raise FarmStartError(f"TLS farm process {why}: {text}")
                time.sleep(0.02)
            ports = json.loads(child.ready.read_text())["ports"]
            first = len(self.endpoints)
            self.endpoints += [(self.specs[first + i].host, port) for i, port in enumerate(ports)]

    def stop(self) -> None:
        for child in self._children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                child.process.wait(10)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self._children.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())

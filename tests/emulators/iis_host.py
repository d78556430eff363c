"""An emulator of the remote-exec result of certfleet's IIS script on a Windows host (no Windows runs here).

It stands at the pypsexec boundary (`powershell.RemoteExec.run_executable`): it gets what PsExec would run on
the host, `powershell.exe` with `-EncodedCommand`, and answers what `iis_binding.ps1` would print. It does not
run PowerShell: it decodes the command, checks that the script is certfleet's template with only the input
blob filled in, and applies the operation (inspect / apply / undo) to an emulated machine store
(Cert:\\LocalMachine\\My) and IIS sites with HTTPS bindings, with the script's rules: compare-and-swap from the
journalled thumbprints, SNI bindings by host name, removal of a certificate certfleet imported and nothing uses.

The PKCS#12 is read from the real Samba share the handler wrote it to, with the password that arrived on
standard input, so a wrong password or a key that does not match fails as Windows would refuse it. `serve`
starts a TLS listener per port that presents each binding's certificate (SNI by host name), so the deployment
flow's handshake proof and the rollback's old-serial proof are real handshakes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from certfleet.connectors.servers import powershell
from certfleet.connectors.servers.iis import SCRIPT


@dataclass
class Binding:
    info: str  # IIS binding information: "ip:port:host"
    thumbprint: str = ""
    store: str = "My"
    sni: bool = False

    @property
    def port(self) -> int:
        return int(self.info.rsplit(":", 2)[1])

    @property
    def host(self) -> str:
        return self.info.rsplit(":", 1)[1]


@dataclass
class Call:
    op: str
    data: dict[str, Any]
    arguments: str
    stdin: bytes | None


@dataclass
class IisHostEmulator:
    share_root: Path  # what C:\ is on the Samba share
    sites: dict[str, list[Binding]]
    store: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # thumbprint -> (cert PEM, key PEM)
    calls: list[Call] = field(default_factory=list)
    fail_next: dict[str, str] = field(default_factory=dict)  # op -> the script's error message, once
    die_after: set[str] = field(default_factory=set)  # ops whose process dies after its change (no result line)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the pypsexec boundary -------------------------------------------------------------------------------

    def run_executable(
        self, executable: str, arguments: str, stdin: bytes | None, timeout: float
    ) -> powershell.ExecResult:
        assert executable == powershell.EXECUTABLE
        script, data = powershell.decode_arguments(arguments)
        # certfleet's template, only its input blob filled in: no value became code
        assert script == powershell.script_with(powershell.template(SCRIPT), data)
        op = str(data["op"])
        self.calls.append(Call(op, data, arguments, stdin))
        with self.lock:
            if op in self.fail_next:
                return _marker("ERROR", {"message": self.fail_next.pop(op)}, 1)
            try:
                result = getattr(self, f"_{op}")(data, stdin)
            except _ScriptError as exc:
                return _marker("ERROR", {"message": str(exc)}, 1)
            if op in self.die_after:
                self.die_after.discard(op)
                return powershell.ExecResult(b"", b"", -1)  # killed: no result line
            return _marker("RESULT", result, 0)

    # -- the script's operations -----------------------------------------------------------------------------

    def _site(self, data: dict[str, Any]) -> list[Binding]:
        if data["site"] not in self.sites:
            raise _ScriptError(f"IIS has no site named '{data['site']}'")
        return self.sites[data["site"]]

    def _on_port(self, data: dict[str, Any]) -> list[Binding]:
        return [b for b in self._site(data) if b.port == int(data["port"])]

    def _inspect(self, data: dict[str, Any], stdin: bytes | None) -> dict[str, Any]:
        states = [
            {"info": b.info, "host": b.host, "sni": b.sni, "thumbprint": b.thumbprint, "store": b.store}
            for b in self._on_port(data)
        ]
        return {"bindings": states, "present": data["thumbprint"] in self.store}

    def _apply(self, data: dict[str, Any], stdin: bytes | None) -> dict[str, Any]:
        line = (stdin or b"").split(b"\r\n", 1)[0]
        if not line:
            raise _ScriptError("no PFX password arrived on standard input")
        password = base64.b64decode(line)
        new = data["thumbprint"]
        site = self._on_port(data)  # the site must exist before anything is imported
        if new not in self.store:
            pfx = self.share_root.joinpath(*PureWindowsPath(data["pfx"]).parts[1:])
            try:
                key, leaf, _cas = pkcs12.load_key_and_certificates(pfx.read_bytes(), password)
            except FileNotFoundError:
                raise _ScriptError(f"Could not find file '{data['pfx']}'.") from None
            except ValueError:
                raise _ScriptError("The specified network password is not correct.") from None
            if leaf is None or hashlib.sha1(leaf.public_bytes(Encoding.DER)).hexdigest().upper() != new:  # noqa: S324
                raise _ScriptError(f"the PFX {data['pfx']} holds no certificate with thumbprint {new}")
            if key is None:
                raise _ScriptError(f"the PFX {data['pfx']} holds no private key for {new}")
            self.store[new] = (
                leaf.public_bytes(Encoding.PEM),
                key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
            )
        expected = {u["info"]: u["thumbprint"] for u in data["undo"]["bindings"]}
        for b in site:
            if b.info not in expected:
                raise _ScriptError(f"the binding {b.info} appeared after certfleet read the bindings: deploy again")
            if b.thumbprint not in (expected[b.info], new):
                raise _ScriptError(f"the binding {b.info} changed to {b.thumbprint} after certfleet read it")
        if not site:
            raise _ScriptError(f"the site has no https binding on port {data['port']}")
        for b in site:  # one IIS commit: all or nothing
            b.thumbprint, b.store = new, "My"
        return {"changed": [b.info for b in site]}

    def _undo(self, data: dict[str, Any], stdin: bytes | None) -> dict[str, Any]:
        new = data["thumbprint"]
        current = {b.info: b for b in self._on_port(data)}
        todo = []
        for u in data["undo"]["bindings"]:
            b = current.get(u["info"])
            if b is None or b.thumbprint == u["thumbprint"]:
                continue
            if b.thumbprint != new:
                raise _ScriptError(
                    f"the binding {u['info']} now uses {b.thumbprint}, neither certfleet's nor the previous"
                )
            todo.append((b, u))
        for b, u in todo:
            b.thumbprint, b.store = u["thumbprint"], u["store"] or "My"
        removed = False
        used = any(b.thumbprint == new for bindings in self.sites.values() for b in bindings)
        if data["undo"]["imported"] and not used and new in self.store:
            del self.store[new]
            removed = True
        return {"restored": [u["info"] for _, u in todo], "removed": removed}

    # -- what HTTP.sys serves ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, port: int) -> Any:
        """A TLS listener on 127.0.0.1:`port` presenting, per connection, the certificate bound on that port
        (an SNI binding for the client's host name first, else the port's non-SNI binding)."""
        files = tempfile.TemporaryDirectory(prefix="certfleet-iis-")
        contexts: dict[str, ssl.SSLContext] = {}

        def context_for(thumb: str) -> ssl.SSLContext | None:
            if thumb not in self.store:
                return None
            if thumb not in contexts:
                cert, key = self.store[thumb]
                Path(files.name, f"{thumb}.crt").write_bytes(cert)
                Path(files.name, f"{thumb}.key").write_bytes(key)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(Path(files.name, f"{thumb}.crt"), Path(files.name, f"{thumb}.key"))
                contexts[thumb] = ctx
            return contexts[thumb]

        def pick(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> int | None:
            with self.lock:
                on_port = [b for bindings in self.sites.values() for b in bindings if b.port == port]
                chosen = next((b for b in on_port if b.sni and name and b.host.lower() == name.lower()), None)
                chosen = chosen or next((b for b in on_port if not b.sni), None)
                ctx = context_for(chosen.thumbprint) if chosen else None
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sock.context = ctx
            return None

        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.sni_callback = pick
        listener = socket.create_server(("127.0.0.1", port))
        listener.settimeout(0.2)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                with contextlib.suppress(OSError, ssl.SSLError):
                    conn.settimeout(5)
                    with base.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)
            listener.close()
            files.cleanup()


class _ScriptError(Exception):
    pass


def _marker(kind: str, value: dict[str, Any], code: int) -> powershell.ExecResult:
    blob = base64.b64encode(json.dumps(value).encode()).decode()
    return powershell.ExecResult(f"CERTFLEET-{kind} {blob}\r\n".encode(), b"", code)

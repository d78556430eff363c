"""An emulator of the Windows Service Control Manager (MS-SCMR) behind a real Samba smbd.

Samba (4.16+) cannot start or stop services any more (its rcinit code is compiled out), so the tests put
this server behind smbd's named-pipe forwarding: with `external_rpc_pipe:socket_dir = DIR` in smb.conf, smbd
connects to the Unix socket `DIR/np/svcctl` for every open of the `svcctl` pipe, sends a
`named_pipe_auth_req` (a big-endian length, "NPAM", the level, then the caller's session info in NDR), reads
a `named_pipe_auth_rep`, and then forwards the DCE/RPC PDUs. The SMB session, NTLM, encryption, the named
pipe and the DCE/RPC bind and calls are real; only the service manager behind the pipe is this emulator.

It runs with the system Python (`/usr/bin/python3`) to use Samba's own NDR marshalling of the svcctl calls
(Debian's python3-samba, installed with samba). Calls served: OpenSCManagerW, OpenServiceW,
QueryServiceStatus, ControlService(STOP), StartServiceW, CloseServiceHandle; other opnums answer a
DCE/RPC fault (nca_op_rng_error), as Windows does for calls it does not know.

Each service is an init-style script run as `SCRIPT start|stop|status` (status exit 0: running); the state a
client sees is the script's status, so a service whose process dies after starting reads STOPPED. Access:
the account names given with --admin may open services for start/stop; any other caller gets
ERROR_ACCESS_DENIED (5) on OpenServiceW with start/stop rights, as a non-administrator does on Windows. The
caller's account is read from the session info smbd sends (its NDR UTF-8 string, delimited exactly).
Errors as Windows answers them: unknown service 1060, second STOP 1062, second START 1056; OpenSCManagerW
with SC_MANAGER_CREATE_SERVICE by a non-administrator 5 (what a PsExec-style run needs).

Usage: scm.py SOCKET_DIR --service NAME=SCRIPT ... --admin ACCOUNT ... [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading
import uuid

from samba.dcerpc import misc, svcctl
from samba.ndr import ndr_pack_out, ndr_unpack_in

SVCCTL_UUID = uuid.UUID("367abb81-9844-35f1-ad32-98f038001003")
NDR_UUID = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")

STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
ERROR_SUCCESS = 0
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
SERVICE_CONTROL_STOP = 1
SERVICE_START, SERVICE_STOP = 0x0010, 0x0020
SC_MANAGER_CREATE_SERVICE = 0x0002
NCA_OP_RNG_ERROR = 0x1C010002

PTYPE_REQUEST, PTYPE_RESPONSE, PTYPE_FAULT, PTYPE_BIND, PTYPE_BIND_ACK = 0, 2, 3, 11, 12


class Manager:
    def __init__(self, services: dict[str, str], admins: list[str], log: object) -> None:
        self.services = {name.lower(): (name, script) for name, script in services.items()}
        self.admins = admins
        self.log = log
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        print(text, file=self.log, flush=True)  # type: ignore[call-overload]

    def script(self, key: str, verb: str, timeout: float = 30.0) -> int:
        name, script = self.services[key]
        try:
            # No pipes: a started server keeps its stdout open for its whole life.
            done = subprocess.run(
                [script, verb], timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.say(f"{name} {verb}: timed out")
            return -1
        self.say(f"{name} {verb}: exit {done.returncode}")
        return done.returncode

    def state(self, key: str) -> int:
        return RUNNING if self.script(key, "status") == 0 else STOPPED


def account_of(auth_req: bytes, admins: list[str]) -> str | None:
    """Which of the admin accounts is the caller: its name as an NDR UTF-8 string in the session info."""
    for name in admins:
        raw = name.encode() + b"\0"
        if struct.pack("<III", len(raw), 0, len(raw)) + raw in auth_req:
            return name
    return None


def auth_rep(level: int) -> bytes:
    """named_pipe_auth_rep: message-mode pipe, status OK."""
    # offsets count from the length field: NDR aligns the hyper inside info7 to 8
    body = b"NPAM" + struct.pack("<I", level)  # 4..12
    body += struct.pack("<I", level)  # 12: the union's discriminant
    body += struct.pack("<HH", 2, 0xFF | 0x0400 | 0x0100)  # 16: FILE_TYPE_MESSAGE_MODE_PIPE, device state
    body += b"\0" * 4  # 20: pad to 24
    body += struct.pack("<Q", 4096)  # 24: allocation size
    body += struct.pack("<I", 0)  # 32: NT_STATUS_OK (36 bytes in all: no trailing padding)
    return struct.pack(">I", len(body)) + body


def recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def header(ptype: int, call_id: int, body: bytes) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, 0x03, b"\x10\0\0\0", 16 + len(body), 0, call_id) + body


class Connection:
    def __init__(self, manager: Manager, conn: socket.socket) -> None:
        self.manager = manager
        self.conn = conn
        self.admin = False
        self.handles: dict[str, tuple[str, str | None, int]] = {}  # uuid -> (kind, service key, access)

    def serve(self) -> None:
        try:
            length = struct.unpack(">I", recv_exact(self.conn, 4))[0]
            req = recv_exact(self.conn, length)
            if req[:4] != b"NPAM":
                return
            level = struct.unpack("<I", req[4:8])[0]
            account = account_of(req, self.manager.admins)
            self.admin = account is not None
            self.manager.say(f"connection: level {level}, admin account {account}")
            self.conn.sendall(auth_rep(level))
            # Message mode: every message either way is framed by smbd's named-pipe stream with a 2-byte
            # little-endian length; a message holds one DCE/RPC fragment here.
            while True:
                size = struct.unpack("<H", recv_exact(self.conn, 2))[0]
                message = recv_exact(self.conn, size)
                reply = self.pdu(message[:16], message[16:])
                self.conn.sendall(struct.pack("<H", len(reply)) + reply)
        except (EOFError, ConnectionError):
            return
        finally:
            self.conn.close()

    def pdu(self, head: bytes, body: bytes) -> bytes:
        ptype = head[2]
        call_id = struct.unpack("<I", head[12:16])[0]
        if ptype == PTYPE_BIND:
            max_xmit, max_recv, _group = struct.unpack("<HHI", body[:8])
            n_ctx = body[8]
            results = b""
            offset = 12
            for _ in range(n_ctx):
                _ctx_id, n_syntax = struct.unpack("<HB", body[offset : offset + 3])
                abstract = uuid.UUID(bytes_le=body[offset + 4 : offset + 20])
                offset += 24
                syntaxes = []
                for _ in range(n_syntax):
                    syntaxes.append(uuid.UUID(bytes_le=body[offset : offset + 16]))
                    offset += 20
                ok = abstract == SVCCTL_UUID and NDR_UUID in syntaxes
                results += struct.pack("<HH", 0 if ok else 2, 0 if ok else 1)
                results += NDR_UUID.bytes_le + struct.pack("<I", 2) if ok else b"\0" * 20
            port = b"\\PIPE\\svcctl\0"
            ack = struct.pack("<HHI", max_xmit, max_recv, 0x12345) + struct.pack("<H", len(port)) + port
            ack += b"\0" * (-(16 + len(ack)) % 4)
            ack += struct.pack("<BBH", n_ctx, 0, 0) + results
            return header(PTYPE_BIND_ACK, call_id, ack)
        if ptype == PTYPE_REQUEST:
            _alloc, ctx_id, opnum = struct.unpack("<IHH", body[:8])
            stub = self.call(opnum, body[8:])
            if stub is None:
                fault = struct.pack("<IHBB", 32, ctx_id, 0, 0) + struct.pack("<II", NCA_OP_RNG_ERROR, 0)
                return header(PTYPE_FAULT, call_id, fault)
            return header(PTYPE_RESPONSE, call_id, struct.pack("<IHBB", len(stub), ctx_id, 0, 0) + stub)
        return header(PTYPE_FAULT, call_id, struct.pack("<IHBB", 32, 0, 0, 0) + struct.pack("<II", 0x1C010003, 0))

    def new_handle(self, kind: str, key: str | None, access: int) -> misc.policy_handle:
        handle = misc.policy_handle()
        key_text = str(uuid.uuid4())
        handle.uuid = misc.GUID(key_text)
        self.handles[key_text] = (kind, key, access)
        return handle

    def status(self, state: int) -> svcctl.SERVICE_STATUS:
        status = svcctl.SERVICE_STATUS()
        status.type = 0x10  # SERVICE_WIN32_OWN_PROCESS
        status.state = state
        status.controls_accepted = 1 if state == RUNNING else 0  # SERVICE_ACCEPT_STOP
        return status

    def call(self, opnum: int, stub: bytes) -> bytes | None:
        m = self.manager
        fns = {15: svcctl.OpenSCManagerW, 16: svcctl.OpenServiceW, 6: svcctl.QueryServiceStatus,
               1: svcctl.ControlService, 19: svcctl.StartServiceW, 0: svcctl.CloseServiceHandle}  # fmt: skip
        if opnum not in fns:
            return None
        fn = fns[opnum]()
        ndr_unpack_in(fn, stub)
        with m.lock:
            fn.result = self.dispatch(opnum, fn)
        return ndr_pack_out(fn)

    def dispatch(self, opnum: int, fn: object) -> int:
        m = self.manager
        if opnum == 15:  # OpenSCManagerW: everyone may connect; only administrators may create services
            if fn.in_access_mask & SC_MANAGER_CREATE_SERVICE and not self.admin:  # type: ignore[attr-defined]
                fn.out_handle = misc.policy_handle()  # type: ignore[attr-defined]
                return ERROR_ACCESS_DENIED
            fn.out_handle = self.new_handle("scm", None, fn.in_access_mask)  # type: ignore[attr-defined]
            return ERROR_SUCCESS
        if opnum == 0:  # CloseServiceHandle
            self.handles.pop(str(fn.in_handle.uuid), None)  # type: ignore[attr-defined]
            fn.out_handle = misc.policy_handle()  # type: ignore[attr-defined]
            return ERROR_SUCCESS
        entry = self.handles.get(str(fn.in_handle.uuid if opnum != 16 else fn.in_scmanager_handle.uuid))  # type: ignore[attr-defined]
        if entry is None:
            if opnum == 16:
                fn.out_handle = misc.policy_handle()  # type: ignore[attr-defined]
            return ERROR_INVALID_HANDLE
        kind, key, access = entry
        if opnum == 16:  # OpenServiceW
            fn.out_handle = misc.policy_handle()  # type: ignore[attr-defined]
            wanted = str(fn.in_ServiceName).lower()  # type: ignore[attr-defined]
            if wanted not in m.services:
                return ERROR_SERVICE_DOES_NOT_EXIST
            if fn.in_access_mask & (SERVICE_START | SERVICE_STOP) and not self.admin:  # type: ignore[attr-defined]
                return ERROR_ACCESS_DENIED
            fn.out_handle = self.new_handle("service", wanted, fn.in_access_mask)  # type: ignore[attr-defined]
            return ERROR_SUCCESS
        if kind != "service" or key is None:
            return ERROR_INVALID_HANDLE
        if opnum == 6:  # QueryServiceStatus
            fn.out_service_status = self.status(m.state(key))  # type: ignore[attr-defined]
            return ERROR_SUCCESS
        if opnum == 1:  # ControlService
            state = m.state(key)
            if fn.in_control != SERVICE_CONTROL_STOP:  # type: ignore[attr-defined]
                fn.out_service_status = self.status(state)  # type: ignore[attr-defined]
                return 1052  # ERROR_INVALID_SERVICE_CONTROL
            if not access & SERVICE_STOP:
                fn.out_service_status = self.status(state)  # type: ignore[attr-defined]
                return ERROR_ACCESS_DENIED
            if state == STOPPED:
                fn.out_service_status = self.status(state)  # type: ignore[attr-defined]
                return ERROR_SERVICE_NOT_ACTIVE
            m.script(key, "stop")
            fn.out_service_status = self.status(m.state(key))  # type: ignore[attr-defined]
            return ERROR_SUCCESS
        if opnum == 19:  # StartServiceW
            if not access & SERVICE_START:
                return ERROR_ACCESS_DENIED
            if m.state(key) == RUNNING:
                return ERROR_SERVICE_ALREADY_RUNNING
            code = m.script(key, "start")
            return ERROR_SUCCESS if code == 0 else ERROR_SERVICE_REQUEST_TIMEOUT if code < 0 else 1064
        return ERROR_INVALID_HANDLE


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket_dir")
    parser.add_argument("--service", action="append", default=[])
    parser.add_argument("--admin", action="append", default=[])
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    log = open(args.log, "a") if args.log else sys.stderr  # noqa: SIM115 - open for the process's life
    services = dict(item.split("=", 1) for item in args.service)
    manager = Manager(services, args.admin, log)
    np_dir = os.path.join(args.socket_dir, "np")
    os.makedirs(np_dir, exist_ok=True)
    path = os.path.join(np_dir, "svcctl")
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o700)  # smbd (root) connects; nobody else
    server.listen(16)
    manager.say(f"listening on {path}")
    while True:
        conn, _ = server.accept()
        threading.Thread(target=Connection(manager, conn).serve, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

"""The client of a running demo listener's control socket (``listener.py serve --control S``).

    python -I -S listener_ctl.py S check    # the listener loads its files from disk and says whether they load
    python -I -S listener_ctl.py S reload   # the listener loads them and serves them, or keeps the old ones

Exit status 0 and the listener's answer on stdout, or 1 and the reason on stderr. Imports ``socket`` and ``sys``
only, so a check or a reload costs a bare interpreter start, not one that imports ``ssl`` and the listener.
"""

from __future__ import annotations

import socket
import sys

TIMEOUT = 30.0
MAX_ANSWER = 64 * 1024


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("check", "reload"):
        print("usage: listener_ctl.py SOCKET check|reload", file=sys.stderr)
        return 2
    path, action = argv
    answer = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(action.encode() + b"\n")
            while len(answer) < MAX_ANSWER:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError as exc:
        print(f"{action} failed: cannot reach the listener at {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    status, _, message = answer.decode("utf-8", "replace").rstrip("\n").partition(" ")
    if status == "ok":
        print(message)
        return 0
    print(message or f"{action} failed: the listener at {path} gave no answer", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

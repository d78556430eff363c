"""How certfleet proves control of a name to an ACME CA.

- `BotHttp01Solver`: http-01 answered by a small HTTP responder on the bot itself (the names must resolve
  to the bot, or a proxy must forward /.well-known/acme-challenge/ to it).
- `WebrootHttp01Solver`: http-01 answered by the web server that already serves the name: the challenge
  file is written into its web root over the server's transport (local agent or SSH).
- `Rfc2136Dns01Solver`: dns-01 through RFC 2136 dynamic DNS updates, signed with a TSIG key.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
from acme import challenges
from josepy.jwk import JWK

from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.transport import Transport

CHALLENGE_DIR = ".well-known/acme-challenge"


class ChallengeSolver(Protocol):
    challenge_type: str  # "http-01" or "dns-01", as ACME names them

    def present(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None: ...

    def cleanup(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None: ...


# -- http-01 on the bot ----------------------------------------------------------------------------------


class Http01Responder:
    """One HTTP server per listen address, shared by every order of this process, up while any order needs it."""

    _registry: ClassVar[dict[tuple[str, int], Http01Responder]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.tokens: dict[str, str] = {}
        self.users = 0
        self.requests_served = 0
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    def acquire(cls, host: str, port: int) -> Http01Responder:
        with cls._registry_lock:
            responder = cls._registry.get((host, port))
            if responder is None:
                responder = cls(host, port)
                responder._start()
                cls._registry[(host, port)] = responder
            responder.users += 1
            return responder

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users <= 0:
                self._registry.pop((self.host, self.port), None)
                if self._server is not None:
                    self._server.shutdown()
                    self._server.server_close()
                    self._server = None

    def _start(self) -> None:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                prefix = f"/{CHALLENGE_DIR}/"
                token = self.path[len(prefix) :] if self.path.startswith(prefix) else None
                body = responder.tokens.get(token or "")
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                responder.requests_served += 1
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        try:
            server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise PermanentConnectorError(
                f"the bot cannot listen on {self.host}:{self.port} to answer http-01 challenges ({exc.strerror}); "
                "free the port, choose another responder address, or use a web root"
            ) from exc
        server.daemon_threads = True
        self._server = server
        # A short poll interval: shutting the responder down after an order waits for one poll.
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"acme-http01-{self.port}", daemon=True
        ).start()


class BotHttp01Solver:
    challenge_type = "http-01"

    def __init__(self, host: str = "0.0.0.0", port: int = 80) -> None:  # noqa: S104 - the CA connects from outside
        self.host = host
        self.port = port
        self._held: dict[str, Http01Responder] = {}
        self._lock = threading.Lock()

    def present(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        responder = Http01Responder.acquire(self.host, self.port)
        token = chall.encode("token")
        responder.tokens[token] = chall.validation(account_key)
        with self._lock:
            self._held[token] = responder

    def cleanup(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        token = chall.encode("token")
        with self._lock:
            responder = self._held.pop(token, None)
        if responder is not None:
            responder.tokens.pop(token, None)
            responder.release()


# -- http-01 through a web root --------------------------------------------------------------------------


class WebrootHttp01Solver:
    challenge_type = "http-01"

    def __init__(self, webroot: str, transports_for: Callable[[str], Sequence[Transport]]) -> None:
        if not webroot.startswith("/"):
            raise PermanentConnectorError(f"the http-01 web root must be an absolute path, not {webroot!r}")
        self.webroot = webroot.rstrip("/") or "/"
        self.transports_for = transports_for

    def _path(self, chall: challenges.KeyAuthorizationChallenge) -> str:
        return posixpath.join(self.webroot, CHALLENGE_DIR, chall.encode("token"))

    def present(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        transports = self.transports_for(order_key)
        if not transports:
            raise PermanentConnectorError(
                f"http-01 through a web root needs the certificate for {domain} to have a deployment target"
            )
        path = self._path(chall)
        for transport in transports:
            result = transport.run(f"mkdir -p {shlex.quote(posixpath.dirname(path))}", timeout=30)
            if result.exit_code != 0:
                raise PermanentConnectorError(
                    f"{transport.label}: cannot create {posixpath.dirname(path)}: {result.tail()}"
                )
            transport.write_atomic(path, chall.validation(account_key).encode(), 0o644)

    def cleanup(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        for transport in self.transports_for(order_key):
            with contextlib.suppress(Exception):  # a leftover token file is harmless
                transport.remove(self._path(chall))


# -- dns-01 through RFC 2136 -----------------------------------------------------------------------------

TSIG_ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}


class Rfc2136Dns01Solver:
    challenge_type = "dns-01"

    def __init__(
        self,
        server: str,
        port: int = 53,
        *,
        tsig_key_name: str | None = None,
        tsig_secret: str | None = None,
        tsig_algorithm: str = "hmac-sha256",
        zone: str | None = None,
        ttl: int = 60,
        timeout_s: float = 10.0,
    ) -> None:
        self.server = server
        self.port = port
        self.zone = zone
        self.ttl = ttl
        self.timeout_s = timeout_s
        self._keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
        self._keyname: dns.name.Name | None = None
        if tsig_key_name and tsig_secret:
            algorithm = TSIG_ALGORITHMS.get(tsig_algorithm.lower())
            if algorithm is None:
                raise PermanentConnectorError(
                    f"TSIG algorithm {tsig_algorithm!r} is not supported; use one of {', '.join(TSIG_ALGORITHMS)}"
                )
            try:
                self._keyname = dns.name.from_text(tsig_key_name)
                self._keyring = {self._keyname: dns.tsig.Key(self._keyname, tsig_secret, algorithm)}
            except (ValueError, dns.exception.DNSException) as exc:
                raise PermanentConnectorError(f"the TSIG key is not valid (name and base64 secret): {exc}") from exc

    def __repr__(self) -> str:
        return f"Rfc2136Dns01Solver(server={self.server!r}, port={self.port}, zone={self.zone!r})"

    def present(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        name, value = self._record(domain, chall, account_key)
        update = self._update(name)
        update.add(name, self.ttl, dns.rdatatype.TXT, f'"{value}"')
        self._send(update, f"add the TXT record {name}")

    def cleanup(
        self, order_key: str, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> None:
        name, value = self._record(domain, chall, account_key)
        update = self._update(name)
        update.delete(name, dns.rdatatype.TXT, f'"{value}"')
        with contextlib.suppress(Exception):  # a stale TXT record does no harm and expires with its TTL
            self._send(update, f"remove the TXT record {name}")

    def _record(
        self, domain: str, chall: challenges.KeyAuthorizationChallenge, account_key: JWK
    ) -> tuple[dns.name.Name, str]:
        assert isinstance(chall, challenges.DNS01)
        fqdn = chall.validation_domain_name(domain.removeprefix("*."))
        return dns.name.from_text(fqdn), chall.validation(account_key)

    def _update(self, name: dns.name.Name) -> dns.update.UpdateMessage:
        zone = dns.name.from_text(self.zone) if self.zone else self.find_zone(name)
        if not name.is_subdomain(zone):
            raise PermanentConnectorError(f"{name} is not inside the configured DNS zone {zone}")
        return dns.update.UpdateMessage(zone, keyring=self._keyring, keyname=self._keyname)

    def find_zone(self, name: dns.name.Name) -> dns.name.Name:
        """The closest enclosing zone the update server is authoritative for (its SOA answers)."""
        candidate = name
        while candidate != dns.name.root:
            query = dns.message.make_query(candidate, dns.rdatatype.SOA)
            try:
                answer = dns.query.udp(query, self.server, port=self.port, timeout=self.timeout_s)
            except (dns.exception.DNSException, OSError) as exc:
                raise TransientConnectorError(
                    f"the DNS server {self.server}:{self.port} did not answer ({exc})"
                ) from exc
            if any(r.rdtype == dns.rdatatype.SOA and r.name == candidate for r in answer.answer):
                return candidate
            candidate = candidate.parent()
        raise PermanentConnectorError(
            f"the DNS server {self.server}:{self.port} is authoritative for no zone containing {name}; set the zone"
        )

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        try:
            response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout_s)
        except dns.tsig.PeerError as exc:
            raise PermanentConnectorError(
                f"the DNS server rejected the TSIG key while trying to {what}: {exc}"
            ) from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise TransientConnectorError(
                f"could not {what}: DNS server {self.server}:{self.port} unreachable ({exc})"
            ) from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = (
                " (check the TSIG key and the server's update-policy)"
                if rcode
                in (
                    dns.rcode.NOTAUTH,
                    dns.rcode.REFUSED,
                )
                else ""
            )
            raise PermanentConnectorError(f"the DNS server refused to {what}: {dns.rcode.to_text(rcode)}{hint}")

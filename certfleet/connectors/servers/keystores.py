"""Keystores for the Java servers (Tomcat, Jetty, JBoss/WildFly, WebLogic).

Keystores are always written as PKCS#12 (every Java since 9 reads it, and the store and key password are
one), built with `certfleet.pki.bundle.to_pkcs12`. `check_keystore` opens what is on the server with the
password its configuration names and checks the key belongs to the leaf: the Java servers' config test.
"""

from __future__ import annotations

import base64
import posixpath
import re
import secrets
from dataclasses import dataclass

import jks
from cryptography.hazmat.primitives.serialization import pkcs12

from certfleet.connectors.base import CertificateBundle
from certfleet.connectors.errors import PermanentConnectorError
from certfleet.pki.bundle import key_matches_certificate, to_java_keystore, to_pkcs12
from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import load_private_key, require_supported_key
from certfleet.pki.parse import load_material
from certfleet.servers import paths

PKCS12 = "PKCS12"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_password() -> str:
    return secrets.token_urlsafe(24)


def keystore_file_name(common_name: str) -> str:
    return (_SAFE_NAME.sub("_", common_name.replace("*", "wildcard")).strip("._") or "certfleet") + ".p12"


def build_pkcs12(where: str, bundle: CertificateBundle, password: str, alias: str) -> bytes:
    """The keystore bytes; a key that is not the certificate's is refused before anything is written."""
    try:
        material = load_material(bundle.leaf_pem + bundle.chain_pem)
        key = load_private_key(bundle.key_pem, trusted=True)  # certfleet's own stored key
        return to_pkcs12(key, material.certificates, password.encode(), friendly_name=alias)
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"{where}: cannot build the keystore: {exc}") from None


@dataclass(frozen=True)
class KeystoreContents:
    serial_number: int
    alias: str | None


def check_keystore(where: str, path: str, data: bytes, password: str, store_type: str | None) -> KeystoreContents:
    """Open a PKCS#12 or JKS keystore as the server will, and check its key belongs to its certificate."""
    kind = (store_type or "").upper()
    if kind in ("JKS", "JCEKS") or data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):
        return _check_jks(where, path, data, password)
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode())
    except ValueError:
        raise PermanentConnectorError(
            f"{where}: the keystore {path} does not open with the password in the configuration"
        ) from None
    if loaded.key is None or loaded.cert is None:
        raise PermanentConnectorError(f"{where}: the keystore {path} holds no private key with a certificate")
    key = require_supported_key(loaded.key)
    leaf = loaded.cert.certificate
    if not key_matches_certificate(key, leaf):
        raise PermanentConnectorError(f"{where}: in the keystore {path} the key does not match the certificate")
    alias = loaded.cert.friendly_name.decode() if loaded.cert.friendly_name else None
    return KeystoreContents(leaf.serial_number, alias)


def _check_jks(where: str, path: str, data: bytes, password: str) -> KeystoreContents:
    try:
        store = jks.KeyStore.loads(data, password)
    except Exception:  # pyjks raises its own hierarchy and ValueErrors alike
        raise PermanentConnectorError(
            f"{where}: the keystore {path} does not open with the password in the configuration"
        ) from None
    for alias, entry in store.private_keys.items():
        if not entry.is_decrypted():
            # Java (and Tomcat without keyPass) reads the key with the store password: so must this check.
            raise PermanentConnectorError(
                f"{where}: in the keystore {path} the key {alias!r} does not open with the store password"
            )
        try:
            material = load_material(b"".join(_pem(c[1]) for c in entry.cert_chain))
            key = load_private_key(entry.pkey_pkcs8)
        except CertificateFormatError as exc:
            raise PermanentConnectorError(f"{where}: the keystore {path} cannot be read: {exc}") from None
        leaf = material.certificates[0]
        if not key_matches_certificate(key, leaf):
            raise PermanentConnectorError(f"{where}: in the keystore {path} the key does not match the certificate")
        return KeystoreContents(leaf.serial_number, alias)
    raise PermanentConnectorError(f"{where}: the keystore {path} holds no private key entry")


def build_jks(where: str, bundle: CertificateBundle, password: str, alias: str) -> bytes:
    """A JKS keystore (store and key password one), for a server whose configuration names a JKS store."""
    try:
        material = load_material(bundle.leaf_pem + bundle.chain_pem)
        key = load_private_key(bundle.key_pem, trusted=True)  # certfleet's own stored key
        return to_java_keystore(key, material.certificates, password, alias=alias)
    except CertificateFormatError as exc:
        raise PermanentConnectorError(f"{where}: cannot build the keystore: {exc}") from None


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n".encode()


def relative_to(base: str, path: str) -> str:
    path = paths.posix_view(path)  # `C:/...` in a Windows server's server.xml is absolute too
    return posixpath.normpath(path if posixpath.isabs(path) else posixpath.join(base, path))

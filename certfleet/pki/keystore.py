"""Read Java keystores (JKS and JCEKS, as `keytool` writes them) into certificate chains and private keys.

A keystore has a store password, which protects its integrity (a keyed SHA-1 over the whole file), and one
password per private key entry (keytool's -keypass, the store password unless set otherwise). They fail
differently and are reported differently: a wrong store password means nothing in the file can be trusted;
a wrong key password leaves that entry's certificate chain readable but its key locked.

Without a store password the certificates are still readable (JKS and JCEKS do not encrypt them), so the
entries are returned with `integrity_checked=False` and no keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jks
from cryptography import x509

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import PrivateKey, load_private_key
from certfleet.pki.parse import order_chain

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"


@dataclass
class KeystoreEntry:
    alias: str
    kind: str  # "private key" or "trusted certificate"
    certificates: list[x509.Certificate]  # leaf first
    private_key: PrivateKey | None = None
    notes: list[str] = field(default_factory=list)  # what was left out of this entry and why
    error: str | None = None  # the entry cannot be used at all


@dataclass
class Keystore:
    store_type: str  # "JKS" or "JCEKS"
    entries: list[KeystoreEntry]
    integrity_checked: bool
    skipped: list[str] = field(default_factory=list)  # aliases of entries that hold no certificate (secret keys)


def is_java_keystore(data: bytes) -> bool:
    return data[:4] in (JKS_MAGIC, JCEKS_MAGIC)


def load_java_keystore(data: bytes, store_password: str | None, key_password: str | None = None) -> Keystore:
    """Every entry with a certificate. Raises CertificateFormatError for a damaged file or a wrong store
    password; a wrong key password is reported on its entry."""
    store_type = "JCEKS" if data[:4] == JCEKS_MAGIC else "JKS"
    try:
        store = jks.KeyStore.loads(data, store_password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise CertificateFormatError(
            f"wrong store password for the {store_type} keystore: its integrity check failed"
        ) from None
    except (jks.util.KeystoreException, ValueError, EOFError, IndexError, UnicodeDecodeError) as exc:
        raise CertificateFormatError(
            f"the {store_type} keystore is damaged or truncated and cannot be read ({type(exc).__name__})"
        ) from None
    entries: list[KeystoreEntry] = []
    for alias, key_entry in sorted(store.private_keys.items()):
        entries.append(_key_entry(alias, key_entry, store_password, key_password))
    for alias, trusted in sorted(store.certs.items()):
        try:
            certificate = x509.load_der_x509_certificate(trusted.cert)
        except ValueError:
            entries.append(KeystoreEntry(alias, "trusted certificate", [], error="its certificate is damaged"))
            continue
        entries.append(KeystoreEntry(alias, "trusted certificate", [certificate]))
    return Keystore(store_type, entries, store_password is not None, sorted(store.secret_keys))


def _key_entry(
    alias: str, entry: jks.PrivateKeyEntry, store_password: str | None, key_password: str | None
) -> KeystoreEntry:
    try:
        chain = order_chain([x509.load_der_x509_certificate(der) for _, der in entry.cert_chain])
    except ValueError:
        return KeystoreEntry(alias, "private key", [], error="its certificate chain is damaged")
    out = KeystoreEntry(alias, "private key", chain)
    if not chain:
        out.error = "it holds a private key without a certificate"
        return out
    password = key_password if key_password is not None else store_password
    if password is None:
        out.notes.append("no keystore password was given, so its private key was not read")
        return out
    try:
        entry.decrypt(password)
    except jks.util.DecryptionFailureException:
        which = "key password" if key_password is not None else "store password, used as its key password,"
        out.notes.append(f"the {which} does not unlock its private key, so only the certificate was imported")
        return out
    except jks.util.KeystoreException as exc:
        out.notes.append(f"its private key cannot be read ({exc}), so only the certificate was imported")
        return out
    try:
        out.private_key = load_private_key(entry.pkey_pkcs8)  # PKCS#8 DER
    except CertificateFormatError as exc:
        out.notes.append(f"its private key was left out: {exc}")
    return out

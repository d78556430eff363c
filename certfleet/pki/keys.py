"""Key specifications, key generation and private key (de)serialisation.

certfleet only issues RSA and EC (P-256/P-384) keys, so everything that hands out a key is typed as
`PrivateKey`; anything else is rejected at the boundary with a CertificateFormatError.
"""

import re
from collections.abc import Callable
from typing import Literal, Self, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, mlkem, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from pydantic import BaseModel, ConfigDict, model_validator

from certfleet.pki.errors import CertificateFormatError

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_ALLOWED_SIZES: dict[str, tuple[int, ...]] = {"rsa": (2048, 3072, 4096), "ec": (256, 384)}
_CURVES: dict[int, type[ec.EllipticCurve]] = {256: ec.SECP256R1, 384: ec.SECP384R1}
_CURVE_SIZES: dict[str, int] = {curve().name: size for size, curve in _CURVES.items()}

_RSA_PATTERN = re.compile(r"rsa[\s:_-]*(\d+)")
_EC_PATTERN = re.compile(r"(?:(?:ecdsa|ec)[\s:_-]*(?:p-?|secp)?|p-?|secp)(\d+)(?:r1)?")
_EC_ALIASES = {"prime256v1": 256}

# Key types that can appear in a certificate but that certfleet never issues: their size is fixed.
# EdDSA/X keys go by their curve size; post-quantum keys have no such number, so their public key length.
_FIXED_SIZE_KEYS: tuple[tuple[type[CertificatePublicKeyTypes], str, int], ...] = (
    (ed25519.Ed25519PublicKey, "Ed25519", 256),
    (ed448.Ed448PublicKey, "Ed448", 448),
    (x25519.X25519PublicKey, "X25519", 256),
    (x448.X448PublicKey, "X448", 448),
    (mldsa.MLDSA44PublicKey, "ML-DSA-44", 1312 * 8),
    (mldsa.MLDSA65PublicKey, "ML-DSA-65", 1952 * 8),
    (mldsa.MLDSA87PublicKey, "ML-DSA-87", 2592 * 8),
    (mlkem.MLKEM768PublicKey, "ML-KEM-768", 1184 * 8),
    (mlkem.MLKEM1024PublicKey, "ML-KEM-1024", 1568 * 8),
)

_KeyLoader: TypeAlias = Callable[..., PrivateKeyTypes]


def _size_problem(algorithm: str, size: int) -> str | None:
    allowed = _ALLOWED_SIZES[algorithm]
    if size in allowed:
        return None
    choices = ", ".join(str(choice) for choice in allowed)
    unit = "EC curve size" if algorithm == "ec" else "RSA key size"
    return f"{unit} {size} is not supported; use one of {choices}"


class KeySpec(BaseModel):
    """Which key to generate: the algorithm plus RSA modulus bits or EC curve size (256 = P-256)."""

    model_config = ConfigDict(frozen=True)

    algorithm: Literal["rsa", "ec"]
    size: int

    @model_validator(mode="after")
    def _check_size(self) -> Self:
        problem = _size_problem(self.algorithm, self.size)
        if problem:
            raise ValueError(problem)
        return self

    @classmethod
    def parse(cls, text: str) -> "KeySpec":
        """Read the spellings users type ("rsa2048", "RSA-3072", "ec-p256", "P-384", ...)."""
        normalized = text.strip().lower()
        algorithm: Literal["rsa", "ec"]
        if match := _RSA_PATTERN.fullmatch(normalized):
            algorithm, size = "rsa", int(match.group(1))
        elif match := _EC_PATTERN.fullmatch(normalized):
            algorithm, size = "ec", int(match.group(1))
        elif normalized in _EC_ALIASES:
            algorithm, size = "ec", _EC_ALIASES[normalized]
        else:
            raise CertificateFormatError(
                f"unknown key type {text!r}; write e.g. 'rsa2048', 'rsa4096', 'ec-p256' or 'ec-p384'"
            )
        problem = _size_problem(algorithm, size)
        if problem:
            raise CertificateFormatError(problem)
        return cls(algorithm=algorithm, size=size)

    def __str__(self) -> str:
        return f"RSA {self.size}" if self.algorithm == "rsa" else f"EC P-{self.size}"

    @property
    def name(self) -> str:
        """The stored spelling (one of KEY_SPEC_NAMES: parse allows only their sizes)."""
        return f"rsa{self.size}" if self.algorithm == "rsa" else f"ec-p{self.size}"


DEFAULT_KEY_SPEC = KeySpec(algorithm="rsa", size=2048)

# The key types a certificate may ask for, each in the one spelling that is stored, listed and filtered on.
KEY_SPEC_NAMES = ("rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384")


def key_spec_problem(text: str) -> str | None:
    """Why `text` is not a key type to store: not one of KEY_SPEC_NAMES as written. Another spelling of one
    ("RSA-3072", "P-256") is refused naming the one to write, not stored lower-cased (then a filter on the Key Type
    column would miss it)."""
    if text in KEY_SPEC_NAMES:
        return None
    try:
        spec = KeySpec.parse(text)
    except CertificateFormatError as exc:
        return str(exc)
    return f"write the key type {text!r} as {spec.name!r}"


def generate_private_key(spec: KeySpec) -> PrivateKey:
    """Make a fresh key for `spec`."""
    if spec.algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.size)
    return ec.generate_private_key(_CURVES[spec.size]())


def private_key_to_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available cipher when a password is given."""
    encryption: serialization.KeySerializationEncryption
    if password is None:
        encryption = serialization.NoEncryption()
    elif not password:
        raise CertificateFormatError("an empty password cannot protect a private key; pass None instead")
    else:
        encryption = serialization.BestAvailableEncryption(password)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def require_supported_key(key: PrivateKeyTypes) -> PrivateKey:
    """Narrow a key loaded from any container to the RSA/EC keys certfleet works with."""
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    algorithm, _ = describe_public_key(key.public_key())
    raise CertificateFormatError(f"{algorithm} private keys are not supported; use an RSA or EC key")


def load_private_key(data: bytes, password: bytes | None = None, *, trusted: bool = False) -> PrivateKey:
    """Load a PEM or DER private key.

    `trusted=True` skips the RSA consistency check (~36 ms per load); only use it for keys certfleet
    generated and stored itself, never for uploaded keys.
    """
    loader: _KeyLoader = (
        serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    )
    try:
        key = _load_key(loader, data, password, trusted)
    except UnsupportedAlgorithm as exc:
        raise CertificateFormatError(f"the private key uses an unsupported algorithm or cipher: {exc}") from exc
    return require_supported_key(key)


def _load_key(loader: _KeyLoader, data: bytes, password: bytes | None, trusted: bool) -> PrivateKeyTypes:
    try:
        return loader(data, password, unsafe_skip_rsa_key_validation=trusted)
    except TypeError as exc:  # cryptography reports a password/encryption mismatch as TypeError
        if password is None:
            raise CertificateFormatError("the private key is encrypted; it needs a password") from exc
        # A password typed for an unencrypted key is harmless: load the key without it.
        return _load_key(loader, data, None, trusted)
    except ValueError as exc:
        if password is not None and _is_encrypted(loader, data):
            raise CertificateFormatError("wrong password for the private key") from exc
        raise CertificateFormatError(
            "not a PEM or DER private key; upload a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
        ) from exc


def _is_encrypted(loader: _KeyLoader, data: bytes) -> bool:
    try:
        loader(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def key_spec_of(public_key: PublicKeyTypes) -> KeySpec | None:
    """The KeySpec a key matches, or None when certfleet would not issue such a key."""
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in _ALLOWED_SIZES["rsa"]:
        return KeySpec(algorithm="rsa", size=public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in _CURVE_SIZES:
        return KeySpec(algorithm="ec", size=_CURVE_SIZES[public_key.curve.name])
    return None


def describe_public_key(public_key: PublicKeyTypes) -> tuple[str, int]:
    """Algorithm name and size in bits of any key, including weak ones, for inventory display.

    EC keys report their curve size; EdDSA/X keys and post-quantum keys the sizes in _FIXED_SIZE_KEYS.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", public_key.curve.key_size
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    for key_type, name, size in _FIXED_SIZE_KEYS:
        if isinstance(public_key, key_type):
            return name, size
    raise CertificateFormatError(f"unsupported public key type {type(public_key).__name__}")

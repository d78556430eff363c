import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, mlkem, rsa, x25519
from pydantic import ValidationError

from certfleet.pki.errors import CertificateFormatError
from certfleet.pki.keys import (
    DEFAULT_KEY_SPEC,
    KEY_SPEC_NAMES,
    KeySpec,
    describe_public_key,
    generate_private_key,
    key_spec_of,
    key_spec_problem,
    load_private_key,
    private_key_to_pem,
)

ALL_SPECS = [
    KeySpec(algorithm="rsa", size=2048),
    KeySpec(algorithm="rsa", size=3072),
    KeySpec(algorithm="rsa", size=4096),
    KeySpec(algorithm="ec", size=256),
    KeySpec(algorithm="ec", size=384),
]


def public_der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_every_spec_generates_and_round_trips_through_pem(spec: KeySpec) -> None:
    key = generate_private_key(spec)
    assert key_spec_of(key.public_key()) == spec
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537

    plain = private_key_to_pem(key)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_der(load_private_key(plain)) == public_der(key)
    assert public_der(load_private_key(plain, trusted=True)) == public_der(key)

    encrypted = private_key_to_pem(key, b"s3cret")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert public_der(load_private_key(encrypted, b"s3cret")) == public_der(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rsa2048", KeySpec(algorithm="rsa", size=2048)),
        ("RSA-3072", KeySpec(algorithm="rsa", size=3072)),
        ("rsa:4096", KeySpec(algorithm="rsa", size=4096)),
        (" Rsa 2048 ", KeySpec(algorithm="rsa", size=2048)),
        ("ec256", KeySpec(algorithm="ec", size=256)),
        ("ec-p256", KeySpec(algorithm="ec", size=256)),
        ("P-256", KeySpec(algorithm="ec", size=256)),
        ("p384", KeySpec(algorithm="ec", size=384)),
        ("ecdsa-p384", KeySpec(algorithm="ec", size=384)),
        ("ECDSA-P256", KeySpec(algorithm="ec", size=256)),
        ("secp384r1", KeySpec(algorithm="ec", size=384)),
        ("prime256v1", KeySpec(algorithm="ec", size=256)),
    ],
)
def test_parse_accepts_common_spellings(text: str, expected: KeySpec) -> None:
    assert KeySpec.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rsa1024", "RSA key size 1024 is not supported; use one of 2048, 3072, 4096"),
        ("rsa-8192", "RSA key size 8192 is not supported; use one of 2048, 3072, 4096"),
        ("ec521", "EC curve size 521 is not supported; use one of 256, 384"),
        ("P-192", "EC curve size 192 is not supported; use one of 256, 384"),
        ("dsa2048", "unknown key type 'dsa2048'; write e.g. 'rsa2048', 'rsa4096', 'ec-p256' or 'ec-p384'"),
        ("2048", "unknown key type '2048'; write e.g. 'rsa2048', 'rsa4096', 'ec-p256' or 'ec-p384'"),
        ("", "unknown key type ''; write e.g. 'rsa2048', 'rsa4096', 'ec-p256' or 'ec-p384'"),
    ],
)
def test_parse_rejects_bad_specs(text: str, message: str) -> None:
    with pytest.raises(CertificateFormatError) as caught:
        KeySpec.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("algorithm", "size", "message"),
    [
        ("rsa", 1024, "RSA key size 1024 is not supported; use one of 2048, 3072, 4096"),
        ("rsa", 256, "RSA key size 256 is not supported; use one of 2048, 3072, 4096"),
        ("ec", 2048, "EC curve size 2048 is not supported; use one of 256, 384"),
        ("ec", 521, "EC curve size 521 is not supported; use one of 256, 384"),
    ],
)
def test_constructor_rejects_bad_sizes(algorithm: str, size: int, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KeySpec(algorithm=algorithm, size=size)
    assert caught.value.errors()[0]["msg"] == f"Value error, {message}"


def test_constructor_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValidationError) as caught:
        KeySpec(algorithm="dsa", size=2048)
    assert caught.value.errors()[0]["loc"] == ("algorithm",)


def test_spec_is_frozen_and_prints_for_humans() -> None:
    spec = KeySpec(algorithm="ec", size=384)
    with pytest.raises(ValidationError):
        spec.size = 256  # type: ignore[misc]
    assert str(spec) == "EC P-384"
    assert str(KeySpec(algorithm="ec", size=256)) == "EC P-256"
    assert str(DEFAULT_KEY_SPEC) == "RSA 2048"
    assert KeySpec(algorithm="rsa", size=2048) == DEFAULT_KEY_SPEC


def test_empty_password_is_refused_rather_than_writing_a_plain_key() -> None:
    key = generate_private_key(KeySpec(algorithm="ec", size=256))
    with pytest.raises(CertificateFormatError, match="an empty password cannot protect a private key"):
        private_key_to_pem(key, b"")


def test_load_der_and_traditional_formats() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    encrypted_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    sec1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    for data, password in ((der, None), (encrypted_der, b"pw"), (sec1, None)):
        assert public_der(load_private_key(data, password)) == public_der(key)


def test_password_given_for_unencrypted_key_is_ignored() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert public_der(load_private_key(private_key_to_pem(key), b"not needed")) == public_der(key)


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_missing_and_wrong_passwords_are_told_apart(der: bool) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    data = key.private_bytes(
        encoding, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"right")
    )
    with pytest.raises(CertificateFormatError, match=r"^the private key is encrypted; it needs a password$"):
        load_private_key(data)
    with pytest.raises(CertificateFormatError, match=r"^wrong password for the private key$"):
        load_private_key(data, b"wrong")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key at all",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x30\x03\x02\x01\x00",
    ],
)
@pytest.mark.parametrize("password", [None, b"pw"])
def test_garbage_is_rejected(data: bytes, password: bytes | None) -> None:
    with pytest.raises(CertificateFormatError, match=r"^not a PEM or DER private key"):
        load_private_key(data, password)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
        (ed448.Ed448PrivateKey.generate(), "Ed448"),
        (dsa.generate_private_key(2048), "DSA"),
        (mldsa.MLDSA65PrivateKey.generate(), "ML-DSA-65"),
    ],
    ids=["ed25519", "ed448", "dsa", "ml-dsa"],
)
def test_unsupported_key_types_are_rejected(
    key: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | dsa.DSAPrivateKey | mldsa.MLDSA65PrivateKey,
    name: str,
) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(CertificateFormatError) as caught:
        load_private_key(pem)
    assert str(caught.value) == f"{name} private keys are not supported; use an RSA or EC key"


def test_describe_and_spec_of_any_public_key() -> None:
    rsa1024 = rsa.generate_private_key(65537, 1024).public_key()  # noqa: S505 - weak on purpose
    p192 = ec.generate_private_key(ec.SECP192R1()).public_key()
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    dsa1024 = dsa.generate_private_key(1024).public_key()  # noqa: S505 - weak on purpose
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    ed4 = ed448.Ed448PrivateKey.generate().public_key()
    x = x25519.X25519PrivateKey.generate().public_key()
    ml_dsa = mldsa.MLDSA87PrivateKey.generate().public_key()
    ml_kem = mlkem.MLKEM768PrivateKey.generate().public_key()

    assert describe_public_key(rsa1024) == ("RSA", 1024)
    assert describe_public_key(p192) == ("EC", 192)
    assert describe_public_key(p521) == ("EC", 521)
    assert describe_public_key(dsa1024) == ("DSA", 1024)
    assert describe_public_key(ed) == ("Ed25519", 256)
    assert describe_public_key(ed4) == ("Ed448", 448)
    assert describe_public_key(x) == ("X25519", 256)
    assert describe_public_key(ml_dsa) == ("ML-DSA-87", 20736)
    assert describe_public_key(ml_kem) == ("ML-KEM-768", 9472)
    for weak in (rsa1024, p192, p521, dsa1024, ed, ed4, x, ml_dsa, ml_kem):
        assert key_spec_of(weak) is None

    rsa3072 = rsa.generate_private_key(65537, 3072).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert describe_public_key(rsa3072) == ("RSA", 3072)
    assert describe_public_key(p384) == ("EC", 384)
    assert key_spec_of(rsa3072) == KeySpec(algorithm="rsa", size=3072)
    assert key_spec_of(p384) == KeySpec(algorithm="ec", size=384)


def test_each_stored_key_type_name_is_the_name_of_what_it_parses_to() -> None:
    for name in KEY_SPEC_NAMES:
        assert key_spec_problem(name) is None
        assert KeySpec.parse(name).name == name
    assert {KeySpec.parse(n).name for n in KEY_SPEC_NAMES} == {s.name for s in ALL_SPECS}


@pytest.mark.parametrize(("text", "name"), [("RSA-3072", "rsa3072"), ("P-256", "ec-p256"), ("ec-p384\n", "ec-p384")])
def test_another_spelling_of_a_key_type_is_refused_naming_the_one_to_write(text: str, name: str) -> None:
    assert key_spec_problem(text) == f"write the key type {text!r} as {name!r}"

"""Deliver one user's PKCS#12 and its password to the configured target (certfleet.smime.delivery): a folder,
an SMB share or two e-mails. No database here; errors are connector errors (transient: worth a retry).

- Folder and share: `<address>/<address>.p12` and `<address>/password.txt` in the target folder, each written to
  a temporary name and renamed over the final one (a failure leaves no partial file under the final name).
- E-mail: the PKCS#12 attached to one message, the password alone in a second one, both to the user's address.
  `mailed` is called once the first is accepted, so a retry sends only the password mail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.connectors.servers.local import LocalTransport
from certfleet.connectors.servers.smb import SmbSettings, SmbTransport
from certfleet.notifications.channels import DeliveryError, smtp_send
from certfleet.servers.paths import windows_path_problem
from certfleet.smime.delivery import Target, share_unc

PASSWORD_FILE = "password.txt"  # noqa: S105 - a file name, not a password


@dataclass(frozen=True)
class Parcel:
    """What one user receives; the bundle and password stay in memory only (never in a log or a task result)."""

    email: str
    name: str
    pkcs12: bytes = field(repr=False)
    password: str = field(repr=False)
    mailed: bool = False  # e-mail: the PKCS#12 mail went out on an earlier attempt

    @property
    def filename(self) -> str:
        return f"{self.email}.p12"


def deliver(target: Target, parcel: Parcel, mailed: Callable[[], None]) -> str:
    """Deliver; returns where to (a path, a UNC path, or `e-mail to ...`)."""
    if target.method == "folder":
        return to_folder(Path(target.settings["path"]), parcel)
    if target.method == "smb":
        return to_share(target, parcel)
    if target.method == "email":
        return by_email(target, parcel, mailed)
    raise PermanentConnectorError(f"unknown S/MIME delivery method {target.method!r}")


def to_folder(root: Path, parcel: Parcel) -> str:
    if "/" in parcel.email or parcel.email.startswith("."):
        raise PermanentConnectorError(f"{parcel.email!r} cannot name a folder")
    folder = root / parcel.email
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise PermanentConnectorError(f"cannot create the folder {folder}: {exc.strerror}") from None
    local = LocalTransport()
    local.write_atomic(str(folder / PASSWORD_FILE), parcel.password.encode() + b"\n", 0o600)
    p12 = folder / parcel.filename
    local.write_atomic(str(p12), parcel.pkcs12, 0o600)
    return str(p12)


def to_share(target: Target, parcel: Parcel) -> str:
    s = target.settings
    folder = f"{share_unc(s)}\\{parcel.email}"
    problem = windows_path_problem(f"C:\\{parcel.email}")  # the address as a Windows folder name
    if problem is not None:
        raise PermanentConnectorError(f"{parcel.email!r} cannot name a folder on a Windows share: {problem[0]}")
    smb = SmbSettings(
        host=s["host"], username=s["username"], password=target.secret or "", port=s["port"], share=s["share"],
        encrypt=bool(s.get("encrypt")),
    )  # fmt: skip
    p12 = f"{folder}\\{parcel.filename}"
    with SmbTransport(smb) as share:
        share.make_dirs(folder)
        share.write_atomic(f"{folder}\\{PASSWORD_FILE}", parcel.password.encode() + b"\r\n", 0o600)
        share.write_atomic(p12, parcel.pkcs12, 0o600)
    return p12


def _mail(target: Target, parcel: Parcel, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = target.settings["sender"]
    mail["To"] = parcel.email
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain="certfleet")
    return mail


def pkcs12_mail(target: Target, parcel: Parcel) -> EmailMessage:
    mail = _mail(target, parcel, f"Your S/MIME certificate for {parcel.email}")
    mail.set_content(
        f"Hello {parcel.name},\n\n"
        f"attached is your S/MIME certificate for {parcel.email} with its private key, as the PKCS#12 file "
        f"{parcel.filename}. Its password comes in a separate e-mail.\n\n"
        "Import the file into your mail client (Outlook: File > Options > Trust Center > Trust Center Settings > "
        "Email Security > Import/Export; Thunderbird: Settings > Privacy & Security > Manage Certificates > Your "
        "Certificates > Import; Apple Mail: open the file in Keychain Access), then delete this e-mail.\n"
    )
    mail.add_attachment(parcel.pkcs12, maintype="application", subtype="x-pkcs12", filename=parcel.filename)
    return mail


def password_mail(target: Target, parcel: Parcel) -> EmailMessage:
    mail = _mail(target, parcel, f"Password for your S/MIME certificate ({parcel.email})")
    mail.set_content(
        f"Hello {parcel.name},\n\n"
        f"the password of the PKCS#12 file {parcel.filename}, sent to you in a separate e-mail, is:\n\n"
        f"{parcel.password}\n\n"
        "Delete this e-mail once the certificate is imported.\n"
    )
    return mail


def by_email(target: Target, parcel: Parcel, mailed: Callable[[], None]) -> str:
    s = target.settings
    if not parcel.mailed:
        _send(target, pkcs12_mail(target, parcel), parcel.email, "the PKCS#12 mail")
        mailed()
    _send(target, password_mail(target, parcel), parcel.email, "the password mail")
    return f"e-mail to {parcel.email} via {s['host']}:{s['port']}"


def _send(target: Target, mail: EmailMessage, address: str, what: str) -> None:
    try:
        smtp_send(target.settings, target.secret, mail, [address])
    except DeliveryError as exc:
        # 5xx: the server refuses (a bad address, a login refused): a retry now would get the same answer.
        kind = PermanentConnectorError if exc.code is not None and 500 <= exc.code < 600 else TransientConnectorError
        raise kind(f"{what} to {address}: {exc}") from None

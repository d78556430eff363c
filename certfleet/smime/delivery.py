"""The S/MIME delivery setting: where smime-rollout puts each user's PKCS#12 and its password.

One setting for the installation (Admin, S/MIME Provisioning -> Delivery, or `PUT /api/v1/smime-delivery`):

- `folder` (the default, also when nothing is saved: `<data dir>/smime-delivery`): a local or NFS-mounted
  folder; each user gets `<path>/<address>/<address>.p12` and `password.txt`, mode 0600.
- `smb`: a Windows or Samba share reached with smbprotocol (NTLM, SMB 3 encryption on demand); each user gets
  `\\\\host\\share\\<folder>\\<address>\\<address>.p12` and `password.txt`.
- `email`: two mails to the user's address through an SMTP server (STARTTLS, implicit TLS or none, optional
  login): the PKCS#12 attached to the first, its password alone in the second.

A body is flat (`{"method": "smb", "host": ..., "password": ...}`); every value is stored exactly as sent or
refused with an `InputError` naming the field. The SMB or SMTP password is sealed and never returned; left out
on edit of the same method, the stored one is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.fields import Host, InputError, Name, Secret
from certfleet.models import repo
from certfleet.models.orm import SmimeDelivery
from certfleet.notifications.service import body_port, body_text, smtp_settings
from certfleet.servers.paths import PathRefused, check_path, is_share_name, windows_path_problem
from certfleet.settings import get_settings

METHODS = ("folder", "smb", "email")
METHOD_LABELS = {"folder": "Local or NFS folder", "smb": "SMB share", "email": "E-mail (SMTP)"}
SMB_USERNAME = Name(320)  # DOMAIN\user or user@domain, as Windows writes it


@dataclass(frozen=True)
class Target:
    """Where to deliver: the method, its shown settings and its secret (SMB or SMTP password)."""

    method: str
    settings: dict[str, Any]
    secret: str | None = field(default=None, repr=False)


def default_folder() -> Path:
    return get_settings().home / "smime-delivery"


def folder_target(path: str | Path) -> Target:
    return Target("folder", {"path": str(path)})


def current_target(session: Session) -> Target:
    """The saved setting, else the data directory's smime-delivery folder."""
    row = session.scalar(select(SmimeDelivery).order_by(SmimeDelivery.id))
    if row is None:
        return folder_target(default_folder())
    return Target(row.method, dict(row.settings), row.secret)


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value in ("true", "on", "1"):
        return True
    if value in ("false", "", "0", None):
        return False
    if not isinstance(value, bool):
        raise InputError(f"{key}: true or false", field=key)
    return value


def share_unc(settings: dict[str, Any]) -> str:
    """`\\\\host\\share` or `\\\\host\\share\\folder`: the folder the users' folders go into."""
    base = f"\\\\{settings['host']}\\{settings['share']}"
    return f"{base}\\{settings['folder']}" if settings.get("folder") else base


def _smb_settings(body: dict[str, Any], password: str | None, password_stored: bool) -> dict[str, Any]:
    host = Host().check(body_text(body, "host") or "", "host")
    settings: dict[str, Any] = {"host": host, "port": body_port(body, default=445, hint=" (SMB: 445)")}
    share = body_text(body, "share") or ""
    settings["share"] = share
    if not is_share_name(share):
        raise InputError("share: a share name such as Certificates or D$ (no \\ / < > : \" | ? * [ ] ; = + ,)",
                         field="share")  # fmt: skip
    folder = body_text(body, "folder", required=False)
    if folder is not None:
        # The same rules for each part as a drive path (Z:, since C:\Windows is refused as a system folder).
        found = windows_path_problem(f"Z:\\{folder}", directory=True)
        if found is not None or folder.startswith("\\") or folder.endswith("\\"):
            why = found[0] if found else "must not start or end with \\"
            raise InputError(f"folder: a folder inside the share such as S-MIME\\Users; {why}", field="folder")
    settings["folder"] = folder
    settings["username"] = SMB_USERNAME.check(body_text(body, "username") or "", "username")
    settings["encrypt"] = _flag(body, "encrypt")
    if password is not None:
        Secret().check(password, "password")
    elif not password_stored:
        raise InputError("password: required (the share user's password, stored encrypted)", field="password")
    return settings


def folder_settings(body: dict[str, Any]) -> dict[str, Any]:
    path = body_text(body, "path") or ""
    try:
        check_path(path, "path", directory=True)
    except PathRefused as exc:
        raise InputError(f"path: {exc}", field="path") from None
    return {"path": path}


def setting_input(
    body: dict[str, Any], stored_method: str | None, stored_secret: str | None
) -> tuple[str, dict[str, Any], str | None]:
    """(method, shown settings, secret or None to keep the stored one) from a flat body."""
    method = body_text(body, "method") or ""
    if method not in METHODS:
        raise InputError(f"method: one of {', '.join(METHODS)}", field="method")
    # A stored password belongs to the method it was saved with: another method needs its own.
    stored = stored_method == method and stored_secret is not None
    password = body_text(body, "password", required=False)
    if method == "folder":
        if password is not None:
            raise InputError("password: a folder takes no password", field="password")
        return method, folder_settings(body), None
    if method == "smb":
        return method, _smb_settings(body, password, stored), password
    return method, smtp_settings(body, password, stored), password


def save_setting(session: Session, body: dict[str, Any], actor: str) -> SmimeDelivery:
    row = session.scalar(select(SmimeDelivery).order_by(SmimeDelivery.id))
    method, settings, secret = setting_input(body, row.method if row else None, row.secret if row else None)
    if row is None:
        row = SmimeDelivery(method=method, settings=settings, secret=secret)
        session.add(row)
    else:
        keep = row.method == method and secret is None
        row.method, row.settings = method, settings
        row.secret = row.secret if keep else secret
    if method == "email" and not settings.get("username"):
        row.secret = None  # no login: no password kept
    row.updated_by = actor
    session.flush()
    repo.audit(session, actor=actor, action="save-smime-delivery", obj=row, detail=describe(current_target(session)))
    return row


def describe(target: Target) -> str:
    """Where deliveries go, in one line (never the secret)."""
    s = target.settings
    if target.method == "folder":
        return f"folder {s['path']}"
    if target.method == "smb":
        return f"SMB share {share_unc(s)} as {s['username']}" + (f" (port {s['port']})" if s["port"] != 445 else "")
    return f"e-mail from {s['sender']} via {s['host']}:{s['port']} ({s['security']})"


def target_detail(target: Target) -> dict[str, Any]:
    """A target as the API and the pages show it: never the secret, only whether one is stored."""
    return {
        "method": target.method,
        "method_label": METHOD_LABELS[target.method],
        "settings": dict(target.settings),
        "password_set": target.secret is not None,
        "summary": describe(target),
    }


def setting_detail(session: Session) -> dict[str, Any]:
    """The setting as the API and the page show it: never the secret, only whether one is stored."""
    row = session.scalar(select(SmimeDelivery).order_by(SmimeDelivery.id))
    return {
        **target_detail(current_target(session)),
        "saved": row is not None,
        "updated_at": row.updated_at.isoformat() if row is not None else None,
        "updated_by": row.updated_by if row is not None else None,
    }

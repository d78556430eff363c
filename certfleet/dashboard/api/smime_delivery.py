"""/api/v1/smime-delivery: where smime-rollout delivers each user's PKCS#12 and password.

The body is flat: `{"method": "folder", "path"}`, `{"method": "smb", "host", "port", "share", "folder", "username",
"password", "encrypt"}` or `{"method": "email", "host", "port", "security" (starttls|tls|none), "sender",
"username", "password", "ca_file"}`. The password is stored encrypted and never returned; left out when the
method stays the same, the stored one is kept. A refused value is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.smime import delivery

router = APIRouter(tags=["S/MIME"])

_SETTING = Body(
    description="method (folder, smb, email) and that method's fields; the password is write-only",
    examples=[
        {"method": "smb", "host": "files.example.com", "share": "Certificates", "folder": "S-MIME",
         "username": "EXAMPLE\\\\certfleet", "password": "...", "encrypt": True},
        {"method": "email", "host": "smtp.example.com", "port": 587, "security": "starttls",
         "sender": "pki@example.com", "username": "pki@example.com", "password": "..."},
    ],
)  # fmt: skip


@router.get("/smime-delivery", summary="Where S/MIME certificates are delivered (never the password)")
def get_setting(db: DbSession, who: Viewer) -> dict[str, Any]:
    return delivery.setting_detail(db)


@router.put("/smime-delivery", summary="Set where S/MIME certificates are delivered: folder, SMB share or e-mail")
def put_setting(db: DbSession, who: Admin, body: dict[str, Any] = _SETTING) -> dict[str, Any]:
    delivery.save_setting(db, body, who.username)
    return delivery.setting_detail(db)

"""Tables the CLI prints."""

from __future__ import annotations

from rich.table import Table
from sqlalchemy import select

from certfleet.models.db import session_scope
from certfleet.models.orm import Certificate


def certificates_table() -> Table:
    table = Table(title="certificates")
    for column in ("id", "CN / SAN", "status", "serial", "expires on", "issuer CA", "reason"):
        table.add_column(column, overflow="fold")
    with session_scope() as s:
        for c in s.scalars(select(Certificate).order_by(Certificate.id)):
            table.add_row(
                str(c.id),
                c.common_name,
                c.status.value,
                c.serial_number or "-",
                c.expires_on.strftime("%Y-%m-%d %H:%M") if c.expires_on else "-",
                c.issuer_ca or "-",
                c.status_reason or "",
            )
    return table

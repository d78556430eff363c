"""Bulk import of S/MIME users from a CSV or Excel file (read with pandas), with a per-row report.

Columns (header row, any order, matched exactly): Name, Email ID (or Email), Designation (optional column; an empty
cell means none). Every row is checked with the same rules as Import Manually (certfleet.fields): a missing or
malformed name, a bad e-mail, an address twice in the file, an address already listed. Nothing is stored from a
file with a failing row unless the caller accepts the good rows (`accept_good`); then only those are stored.
Values are taken exactly as the cells hold them (pandas reads every cell as text, nothing trimmed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certfleet import tabular
from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import SmimeStatus, SmimeUser, utcnow
from certfleet.smime.service import DESIGNATION, EMAIL, MANUAL_SOURCE, USER_NAME

MAX_ROWS = 50_000
NAME_COLUMNS = ("Name",)
EMAIL_COLUMNS = ("Email ID", "Email")
DESIGNATION_COLUMNS = ("Designation",)


@dataclass
class RowResult:
    row: int  # as a spreadsheet numbers it: the header is row 1
    name: str
    email: str
    designation: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return not self.problems


@dataclass
class BulkReport:
    rows: list[RowResult]
    stored: int = 0

    @property
    def bad(self) -> list[RowResult]:
        return [r for r in self.rows if not r.good]

    @property
    def good(self) -> list[RowResult]:
        return [r for r in self.rows if r.good]

    def as_json(self) -> dict[str, object]:
        return {
            "rows": len(self.rows),
            "good": len(self.good),
            "failed": len(self.bad),
            "stored": self.stored,
            "problems": [{"row": r.row, "email": r.email, "problems": r.problems} for r in self.bad],
        }


def read_table(data: bytes, filename: str) -> list[tuple[int, str, str, str | None]]:
    """(row number, name, email, designation) for each data row; InputError(field="file") when unreadable."""
    table = tabular.read_table(data, filename, max_rows=MAX_ROWS)

    def optional(names: tuple[str, ...]) -> str | None:
        return next((name for name in names if name in table.columns), None)

    def required(names: tuple[str, ...]) -> str:
        found = optional(names)
        if found is None:
            wanted = " or ".join(repr(n) for n in names)
            header = ", ".join(table.columns)
            raise InputError(f"file: no column {wanted} in the header row (found: {header})", field="file")
        return found

    name_col, email_col = required(NAME_COLUMNS), required(EMAIL_COLUMNS)
    designation_col = optional(DESIGNATION_COLUMNS)
    rows = []
    for number, record in table.rows:
        designation = record[designation_col] if designation_col else ""
        rows.append((number, record[name_col], record[email_col], designation or None))
    return rows


def check_rows(session: Session, rows: list[tuple[int, str, str, str | None]]) -> BulkReport:
    addresses = [email.lower() for _, _, email, _ in rows if email]
    listed: set[str] = set()
    for start in range(0, len(addresses), 500):
        chunk = addresses[start : start + 500]
        listed.update(
            session.scalars(select(func.lower(SmimeUser.email)).where(func.lower(SmimeUser.email).in_(chunk)))
        )
    seen: dict[str, int] = {}
    results = []
    for row, name, email, designation in rows:
        result = RowResult(row, name, email, designation)
        if not name:
            result.problems.append("name: missing")
        elif problem := USER_NAME.problem(name):
            result.problems.append(f"name: {problem}")
        if problem := EMAIL.problem(email):
            result.problems.append(f"email: {problem}" if email else "email: missing")
        else:
            key = email.lower()
            if key in listed:
                result.problems.append(f"email: {email} is already in the S/MIME list")
            elif key in seen:
                result.problems.append(f"email: duplicate of row {seen[key]}")
            else:
                seen[key] = row
        if designation is not None and (problem := DESIGNATION.problem(designation)):
            result.problems.append(f"designation: {problem}")
        results.append(result)
    return BulkReport(results)


def import_file(session: Session, data: bytes, filename: str, *, accept_good: bool, actor: str) -> BulkReport:
    """Check every row; store all of them, or (with `accept_good`) the good ones, or nothing."""
    report = check_rows(session, read_table(data, filename))
    if report.bad and not accept_good:
        return report
    stored = []
    for result in report.good:
        stored.append(
            SmimeUser(
                name=result.name,
                email=result.email,
                designation=result.designation,
                source=MANUAL_SOURCE,
                status=SmimeStatus.AWAITING_ORDER,
                created_at=utcnow(),
            )
        )
    session.add_all(stored)
    session.flush()
    report.stored = len(stored)
    if stored:
        detail = f"{filename}: {report.stored} stored, {len(report.bad)} rows refused"
        repo.audit(session, actor=actor, action="import-smime-users", obj=stored[0], detail=detail)
    return report

"""Bulk import of S/MIME users from a CSV or Excel file (read with pandas), with a per-row report.

Columns (header row, any order, matched exactly): Name, Email ID (or Email), Designation (optional column; an empty
cell means none). Every row is checked with the same rules as Import Manually (certfleet.fields): a missing or
malformed name, a bad e-mail, an address twice in the file, an address already listed. Nothing is stored from a
file with a failing row unless the caller accepts the good rows (`accept_good`); then only those are stored.
Values are taken exactly as the cells hold them (pandas reads every cell as text, nothing trimmed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def read_table(data: bytes, filename: str) -> list[tuple[int, str, str, str | None]]:
    """(row number, name, email, designation) for each data row; InputError(field="file") when unreadable."""
    import pandas as pd

    lower = filename.lower()
    try:
        if lower.endswith((".xlsx", ".xlsm")):
            frame = pd.read_excel(
                io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, engine="openpyxl"
            )
        elif lower.endswith((".csv", ".txt")):
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
            )
        else:
            raise InputError(f"file: {filename!r} is neither a .csv nor an .xlsx file", field="file")
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError("file: the CSV file is not UTF-8 text", field="file") from None
    except Exception as exc:  # pandas/openpyxl raise many kinds for a file that is not what it claims
        raise InputError(
            f"file: {filename!r} could not be read as a table ({type(exc).__name__})", field="file"
        ) from None
    columns = [str(c) for c in frame.columns]

    def pick(names: tuple[str, ...], required: bool) -> str | None:
        for name in names:
            if name in columns:
                return name
        if required:
            wanted = " or ".join(repr(n) for n in names)
            raise InputError(f"file: no column {wanted} in the header row (found: {', '.join(columns)})", field="file")
        return None

    name_col, email_col = pick(NAME_COLUMNS, True), pick(EMAIL_COLUMNS, True)
    designation_col = pick(DESIGNATION_COLUMNS, False)
    if len(frame) > MAX_ROWS:
        raise InputError(f"file: {len(frame)} rows, at most {MAX_ROWS} at a time", field="file")
    if len(frame) == 0:
        raise InputError("file: no rows under the header", field="file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        designation = _cell(record[designation_col]) if designation_col else ""
        rows.append((index + 2, _cell(record[name_col]), _cell(record[email_col]), designation or None))
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

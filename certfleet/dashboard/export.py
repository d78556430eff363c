"""Export to Excel and PDF of exactly the filtered rows and chosen columns, streamed.

Excel: rows are written into a temporary .xlsx as they come (xlsx.py: header row, widths, autofilter, frozen
header, real dates); the finished file is then streamed from disk; any number of rows, in flat memory.
PDF (pdf.py: fpdf2, embedded Unicode fonts): at most `pdf.MAX_ROWS` rows; a larger export is refused with 422
before anything is written, naming the cap and pointing to Excel.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from certfleet.dashboard import listing, pdf
from certfleet.dashboard.errors import InputError
from certfleet.dashboard.xlsx import write_xlsx
from certfleet.models.db import session_scope

Format = Literal["xlsx", "pdf"]
MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%d-%b-%Y %H:%M UTC")


def xlsx_chunks(spec: listing.ListSpec, query: listing.ListQuery, who: str) -> Iterator[bytes]:
    cols = listing.chosen_columns(spec, query.columns)
    fd, name = tempfile.mkstemp(prefix="certfleet-export-", suffix=".xlsx")
    os.close(fd)
    path = Path(name)
    try:
        with session_scope() as s:
            rows = ([listing.excel_value(c, row[c.key]) for c in cols] for row in listing.stream(s, spec, query))
            write_xlsx(
                path,
                spec.title,
                [c.label for c in cols],
                [c.width + 2 for c in cols],
                rows,
                lambda n: [
                    ("Export", spec.title),
                    ("Filter", listing.describe(spec, query)),
                    ("Rows", n),
                    ("Exported at", _stamp()),
                    ("Exported by", who),
                ],
            )
        with path.open("rb") as fh:
            while chunk := fh.read(256 * 1024):
                yield chunk
    finally:
        path.unlink(missing_ok=True)


def pdf_chunks(spec: listing.ListSpec, query: listing.ListQuery, who: str) -> Iterator[bytes]:
    cols = listing.chosen_columns(spec, query.columns)

    def rows() -> Iterator[list[str]]:
        with session_scope() as s:
            for row in listing.stream(s, spec, query):
                yield [listing.display(c, row[c.key]) for c in cols]

    yield from pdf.table_pdf(
        spec.title,
        [f"Filter: {listing.describe(spec, query)}", f"Exported at {_stamp()} by {who}"],
        [c.label for c in cols],
        [float(c.width) for c in cols],
        rows(),
    )


def _check_pdf(spec: listing.ListSpec, query: listing.ListQuery) -> None:
    try:
        pdf.check_fonts()
    except pdf.MissingFontError as exc:  # the server lacks a package: not the user's mistake
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    with session_scope() as s:
        rows = listing.count(s, spec, query.filters)
    if rows > pdf.MAX_ROWS:
        raise InputError(
            f"a PDF export holds at most {pdf.MAX_ROWS:,} rows and this list has {rows:,}: narrow the filter, "
            "or export to Excel (format=xlsx), which has no row limit",
            field="format",
        )


def export_response(spec: listing.ListSpec, query: listing.ListQuery, fmt: str, who: str) -> StreamingResponse:
    if fmt not in MEDIA:
        raise InputError(f"export format must be xlsx or pdf, not {fmt!r}", field="format")
    # Validate the filter and columns now, so a mistake is a 422 and not a broken download.
    listing.where_clause(spec, query.filters)
    listing.chosen_columns(spec, query.columns)
    listing.order_by(spec, query.sort)  # an unknown sort key failed mid-stream (found by test_api_fuzz.py)
    if fmt == "pdf":
        _check_pdf(spec, query)
    chunks = xlsx_chunks(spec, query, who) if fmt == "xlsx" else pdf_chunks(spec, query, who)
    name = f"{spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.{fmt}"
    return StreamingResponse(
        chunks, media_type=MEDIA[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )

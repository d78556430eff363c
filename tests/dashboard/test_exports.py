"""Exports keep every character (issue 11 #8): PDF text read back with pdftotext, Excel read back with openpyxl.

PDF: Unicode fonts embedded (CJK through a fallback font), a decomposed accent kept, a stated row cap refused with
422 before anything is written. Excel: formula-like text keeps the quote prefix; characters XML cannot carry are
written as OOXML `_xHHHH_` escapes instead of vanishing.
"""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import insert

from certfleet.dashboard import pdf
from certfleet.dashboard.xlsx import write_xlsx
from certfleet.models.db import session_scope
from certfleet.models.orm import AuditEvent, Bot
from tests.dashboard.conftest import Accounts, auth
from tests.dashboard.pdftext import pdf_text

STRINGS = [
    "北京 ☕",
    "Cafe\u0301 decomposed",  # e + U+0301 COMBINING ACUTE ACCENT, as stored
    "Café precomposed",
    "Ünïcødé Café 北京 ☕",
    'R&D <team> "prod"',
    "Москва Ελλάδα",
    "東京 서울",
]


def _add_bots(descriptions: list[str]) -> None:
    with session_scope() as s:
        for i, text in enumerate(descriptions):
            s.add(Bot(name=f"bot-{i:02d}", description=text, work_queue=f"q{i}"))


def test_pdf_export_keeps_cjk_symbols_and_decomposed_accents(
    client: TestClient, accounts: Accounts, tmp_path: Path
) -> None:
    _add_bots(STRINGS)
    filt = "description:contains:☕"
    response = client.get(
        "/api/v1/bots/export",
        params={"format": "pdf", "columns": "name,description", "filter": []},
        headers=auth(accounts, "viewer"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    lines = pdf_text(response.content, tmp_path).splitlines()
    for text in STRINGS:
        assert text in lines, f"{text!r} is not in the PDF's text: {lines}"
    assert "?? ?" not in lines

    # A filter value with CJK appears in the subtitle as typed.
    response = client.get(
        "/api/v1/bots/export", params={"format": "pdf", "filter": [filt]}, headers=auth(accounts, "viewer")
    )
    text = pdf_text(response.content, tmp_path)
    assert "Filter: Description Contains ☕" in text
    assert "bot-00" in text
    assert "bot-03" in text
    assert "bot-01" not in text


def test_pdf_is_a4_landscape_and_cuts_long_values_with_an_ellipsis(
    client: TestClient, accounts: Accounts, tmp_path: Path
) -> None:
    long = "北京 ☕ " + "very long description " * 20
    _add_bots([long])
    response = client.get(
        "/api/v1/bots/export", params={"format": "pdf", "columns": "name,description"}, headers=auth(accounts, "viewer")
    )
    lines = pdf_text(response.content, tmp_path).splitlines()
    cut = next(line for line in lines if line.startswith("北京 ☕ very long"))
    assert cut.endswith("…")
    assert long.startswith(cut[:-1])
    assert len(cut) < len(long)
    (tmp_path / "export.pdf").write_bytes(response.content)
    info = subprocess.run(["pdfinfo", str(tmp_path / "export.pdf")], capture_output=True, text=True, check=True)
    assert re.search(r"Page size:\s+842 x 595 pts \(A4\)", info.stdout), info.stdout


def test_pdf_shows_characters_no_font_draws_as_escapes(tmp_path: Path) -> None:
    data = b"".join(
        pdf.table_pdf("T", [], ["A", "B"], [10, 10], [["a\x00b", "lone \ud800"], ["del\x7f", "tab\tnew\nline"]])
    )
    lines = pdf_text(data, tmp_path).splitlines()
    for shown in ("a_x0000_b", "lone _xD800_", "del_x007F_", "tab new line"):
        assert shown in lines


def test_pdf_export_over_the_row_cap_is_refused_naming_the_cap_and_excel(
    client: TestClient, accounts: Accounts
) -> None:
    with session_scope() as s:
        s.execute(
            insert(AuditEvent),
            [{"actor": "t", "action": "a", "object_type": "bot", "outcome": "ok"} for _ in range(pdf.MAX_ROWS + 1)],
        )
    h = auth(accounts, "admin")
    refused = client.get("/api/v1/audit/export", params={"format": "pdf"}, headers=h)
    assert refused.status_code == 422
    body = refused.json()
    assert body["field"] == "format"
    assert f"at most {pdf.MAX_ROWS:,} rows" in body["detail"]
    assert "xlsx" in body["detail"]
    # Narrowed by a filter, the same list exports; Excel takes every row.
    narrowed = client.get(
        "/api/v1/audit/export", params={"format": "pdf", "filter": ["action:eq:nothing-like-this"]}, headers=h
    )
    assert narrowed.status_code == 200
    excel = client.get("/api/v1/audit/export", params={"format": "xlsx", "columns": "actor"}, headers=h)
    assert excel.status_code == 200
    about = dict(load_workbook(io.BytesIO(excel.content), read_only=True)["About"].iter_rows(values_only=True))
    assert about["Rows"] >= pdf.MAX_ROWS + 1


def test_pdf_export_without_its_fonts_says_which_package_is_missing(
    client: TestClient, accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdf, "_FONT_DIRS", (tmp_path,))
    response = client.get("/api/v1/bots/export", params={"format": "pdf"}, headers=auth(accounts, "viewer"))
    assert response.status_code == 503
    assert "DejaVuSans.ttf" in response.json()["detail"]
    assert "fonts-dejavu-core" in response.json()["detail"]


FORMULA_LIKE = ["=1+1", "+49 30 123456", "-5", "@SUM(A1:A2)", "\tindented", "\rcarriage"]


def test_excel_export_gives_formula_like_text_the_quote_prefix(client: TestClient, accounts: Accounts) -> None:
    _add_bots([*FORMULA_LIKE, "plain text", "a = b"])
    response = client.get(
        "/api/v1/bots/export",
        params={"format": "xlsx", "columns": "name,description"},
        headers=auth(accounts, "viewer"),
    )
    assert response.status_code == 200
    ws = load_workbook(io.BytesIO(response.content))["Provisioning Bots"]
    cells = {row[0].value: row[1] for row in ws.iter_rows(min_row=2)}
    for i, text in enumerate(FORMULA_LIKE):
        cell = cells[f"bot-{i:02d}"]
        assert cell.data_type == "s"
        assert cell.quotePrefix, f"{text!r} has no quote prefix"
    assert cells["bot-00"].value == "=1+1"  # text, not a formula
    assert cells["bot-05"].value == "_x000D_carriage"  # a CR as Excel itself writes it (XML would make it LF)
    assert not cells["bot-06"].quotePrefix
    assert not cells["bot-07"].quotePrefix


def _ooxml_decode(text: str) -> str:
    """What Excel shows for a cell's text: `_xHHHH_` escapes decoded (ECMA-376 Part 1, 22.9.2.19)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def test_excel_writer_escapes_characters_xml_cannot_hold_instead_of_dropping_them(tmp_path: Path) -> None:
    values = ["a\x00b", "bell\x07", "x\x1fy", "cr\rlf\n", "_x0041_ is literal", "lone \ud800 surrogate", "ok ☕"]
    path = tmp_path / "out.xlsx"
    write_xlsx(path, "Sheet", ["Value"], [20], ([v] for v in values), lambda n: [("Rows", n)])

    ws = load_workbook(path)["Sheet"]  # a valid workbook: openpyxl parses every cell
    shown = [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert shown[0] == "a_x0000_b"  # the NUL is visible, not gone
    assert shown[4] == "_x005F_x0041_ is literal"  # a literal escape-like text is itself escaped

    with zipfile.ZipFile(path) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml").decode("utf-8")
    texts = re.findall(r"<t xml:space=\"preserve\">(.*?)</t>", sheet, re.DOTALL)
    assert [_ooxml_decode(t) for t in texts] == values  # decoded as Excel does: every character is back

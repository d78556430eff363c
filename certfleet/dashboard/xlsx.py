"""A streaming .xlsx writer: rows go straight into the zipped sheet XML, so 100,000 rows take seconds and flat memory.

openpyxl's write-only mode produced the same file ~10x slower (its per-cell objects cost ~25 µs each); the files
this writes are read back by openpyxl in the tests. What it writes: a header row (bold, frozen), column widths,
an autofilter over the rows, dates as real Excel dates, numbers as numbers, text as inline strings, and an extra
"About" sheet. Text that starts like a formula (`=`, `+`, `-`, `@`, tab, CR) gets the quote-prefix style, so it
stays text when the cell is edited; characters XML cannot hold are written as `_xHHHH_` (Excel decodes them).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

_EPOCH = datetime(1899, 12, 30)
# Characters XML cannot carry (CR would be read back as LF; lone surrogates cannot be encoded), and a `_` that
# starts what a reader would take for an escape: written as OOXML's `_xHHHH_`, which Excel decodes, so nothing
# is dropped or changed (issue 11 #8/#12: a NUL used to vanish from the export).
_NEEDS_ESCAPE = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ud800-\udfff\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")
# Text that a spreadsheet would take for a formula or a number when the cell is edited keeps the quote prefix.
_FORMULA_LIKE = ("=", "+", "-", "@", "\t", "\r")
_STYLE_DATE, _STYLE_HEADER, _STYLE_TEXT = 1, 2, 3

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/worksheets/sheet2.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""  # noqa: E501
_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""  # noqa: E501
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet2.xml"/>
<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"""  # noqa: E501
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<numFmts count="1"><numFmt numFmtId="164" formatCode="dd\\-mmm\\-yyyy hh:mm"/></numFmts>
<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font><font><b/><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/><xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/><xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""  # noqa: E501
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def column_letter(index: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _escape_char(match: re.Match[str]) -> str:
    return f"_x{ord(match.group()):04X}_"


def _text(value: str) -> str:
    return escape(_NEEDS_ESCAPE.sub(_escape_char, value))


def _cell(ref: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "Yes" if value else "No"
    elif isinstance(value, datetime):
        moment = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        serial = (moment - _EPOCH).total_seconds() / 86400
        return f'<c r="{ref}" s="{_STYLE_DATE}"><v>{serial:.8f}</v></c>'
    elif isinstance(value, date):
        return f'<c r="{ref}" s="{_STYLE_DATE}"><v>{(value - _EPOCH.date()).days}</v></c>'
    elif isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value}</v></c>'
    text = str(value)
    style = f' s="{_STYLE_TEXT}"' if text.startswith(_FORMULA_LIKE) else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t xml:space="preserve">{_text(text)}</t></is></c>'


def _row(out: IO[bytes], number: int, letters: Sequence[str], values: Sequence[Any], style: int = 0) -> None:
    if style:
        cells = "".join(
            f'<c r="{c}{number}" s="{style}" t="inlineStr"><is><t>{_text(str(v))}</t></is></c>'
            for c, v in zip(letters, values, strict=True)
        )
    else:
        cells = "".join(_cell(f"{c}{number}", v) for c, v in zip(letters, values, strict=True))
    out.write(f'<row r="{number}">{cells}</row>'.encode())


def _sheet(
    zf: zipfile.ZipFile,
    part: str,
    headers: Sequence[str],
    widths: Sequence[float],
    rows: Iterable[Sequence[Any]],
    *,
    frozen_header: bool,
    autofilter: bool,
) -> int:
    letters = [column_letter(i) for i in range(1, len(headers) + 1)]
    n = 0
    with zf.open(part, "w", force_zip64=True) as out:
        out.write(_SHEET_HEAD.encode())
        if frozen_header:
            out.write(
                b'<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
                b'state="frozen"/></sheetView></sheetViews>'
            )
        cols = "".join(f'<col min="{i}" max="{i}" width="{w:g}" customWidth="1"/>' for i, w in enumerate(widths, 1))
        out.write(f"<cols>{cols}</cols><sheetData>".encode())
        _row(out, 1, letters, headers, style=_STYLE_HEADER if frozen_header else 0)
        for values in rows:
            n += 1
            _row(out, n + 1, letters, values)
        out.write(b"</sheetData>")
        if autofilter:
            out.write(f'<autoFilter ref="A1:{letters[-1]}{n + 1}"/>'.encode())
        out.write(b"</worksheet>")
    return n


def write_xlsx(
    path: Path,
    sheet_title: str,
    headers: Sequence[str],
    widths: Sequence[float],
    rows: Iterable[Sequence[Any]],
    about: Callable[[int], list[tuple[str, Any]]],
) -> int:
    """Writes the workbook; `about(n)` gives the About sheet's (label, value) pairs once the row count is known."""
    title = re.sub(r"[\[\]:*?/\\]", " ", sheet_title)[:31] or "Export"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=4) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _RELS)
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("xl/styles.xml", _STYLES)
        n = _sheet(zf, "xl/worksheets/sheet1.xml", headers, widths, rows, frozen_header=True, autofilter=True)
        pairs = about(n)
        _sheet(zf, "xl/worksheets/sheet2.xml", pairs[0], [18, 60], pairs[1:], frozen_header=False, autofilter=False)
        zf.writestr(
            "xl/workbook.xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
            f'<sheet name="{escape(title)}" sheetId="1" r:id="rId1"/><sheet name="About" sheetId="2" r:id="rId2"/>'
            "</sheets><definedNames>"
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">\'{escape(title)}\'!'
            f"$A$1:${column_letter(len(headers))}${n + 1}</definedName></definedNames></workbook>",
        )
    return n

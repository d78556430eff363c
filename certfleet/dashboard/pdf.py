"""A small streaming PDF writer for tables: one page at a time goes out, so 100,000 rows never sit in memory.

It writes PDF 1.4 by hand (standard Helvetica fonts, WinAnsi text, compressed page streams) because the usual
libraries build the whole document in memory before writing it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence

# Helvetica advance widths (1/1000 em) for ASCII 32..126, from the standard Adobe AFM.
_HELVETICA = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]  # fmt: skip
_BOLD_FACTOR = 1.08  # Helvetica-Bold is a little wider; headers are measured generously

PAGE_W, PAGE_H = 842.0, 595.0  # A4 landscape, points
MARGIN = 28.0
FONT_SIZE = 7.5
LINE_H = 11.0


def text_width(text: str, size: float, bold: bool = False) -> float:
    units = sum(_HELVETICA[ord(ch) - 32] if 32 <= ord(ch) <= 126 else 556 for ch in text)
    return units * size / 1000 * (_BOLD_FACTOR if bold else 1.0)


def fit(text: str, width: float, size: float, bold: bool = False) -> str:
    """The text cut (with an ellipsis) so it fits the width."""
    text = " ".join(text.split())
    if text_width(text, size, bold) <= width:
        return text
    ellipsis_w = 1000 * size / 1000
    while text and text_width(text, size, bold) + ellipsis_w > width:
        text = text[:-1]
    return text + "\u2026"


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


class _Writer:
    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}
        self.position = 0

    def obj(self, number: int, body: bytes) -> bytes:
        self.offsets[number] = self.position
        chunk = f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
        self.position += len(chunk)
        return chunk

    def raw(self, data: bytes) -> bytes:
        self.position += len(data)
        return data


def table_pdf(
    title: str,
    subtitle_lines: Sequence[str],
    headers: Sequence[str],
    widths: Sequence[float],
    rows: Iterable[Sequence[str]],
) -> Iterator[bytes]:
    """Yields the PDF in pieces: a title block, a header row repeated on every page, then the rows."""
    usable = PAGE_W - 2 * MARGIN
    total = sum(widths) or 1.0
    col_w = [usable * w / total for w in widths]
    w = _Writer()
    yield w.raw(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    yield w.obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>"
    yield w.obj(3, font % b"Helvetica")
    yield w.obj(4, font % b"Helvetica-Bold")
    next_obj = 5
    kids: list[int] = []

    def page(lines: list[bytes]) -> bytes:
        nonlocal next_obj
        content = zlib.compress(b"\n".join(lines))
        stream_no, page_no = next_obj, next_obj + 1
        next_obj += 2
        kids.append(page_no)
        out = w.obj(
            stream_no,
            f"<< /Length {len(content)} /Filter /FlateDecode >>\nstream\n".encode() + content + b"\nendstream",
        )
        out += w.obj(
            page_no,
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W:g} {PAGE_H:g}] "
            f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {stream_no} 0 R >>".encode(),
        )
        return out

    def text(x: float, y: float, s: str, size: float, bold: bool = False) -> bytes:
        return b"BT /%s %g Tf %.2f %.2f Td %s Tj ET" % (b"F2" if bold else b"F1", size, x, y, _pdf_string(s))

    def header_block(first: bool) -> tuple[list[bytes], float]:
        lines: list[bytes] = []
        y = PAGE_H - MARGIN
        if first:
            lines.append(text(MARGIN, y - 14, fit(title, usable, 14, True), 14, True))
            y -= 22
            for sub in subtitle_lines:
                lines.append(text(MARGIN, y - 9, fit(sub, usable, 8.5), 8.5))
                y -= 12
            y -= 4
        else:
            lines.append(text(MARGIN, y - 8, fit(title, usable, 8), 8, True))
            y -= 14
        lines.append(b"0.85 0.88 0.93 rg %.2f %.2f %.2f %.2f re f 0 g" % (MARGIN, y - LINE_H - 2, usable, LINE_H + 2))
        x = MARGIN
        for head, cw in zip(headers, col_w, strict=True):
            lines.append(text(x + 2, y - LINE_H + 1, fit(head, cw - 4, FONT_SIZE, True), FONT_SIZE, True))
            x += cw
        return lines, y - LINE_H - 4

    lines, y = header_block(True)
    page_count = 0
    for row in rows:
        if y - LINE_H < MARGIN + 12:
            page_count += 1
            lines.append(text(PAGE_W - MARGIN - 40, MARGIN - 10, f"page {page_count}", 7))
            yield page(lines)
            lines, y = header_block(False)
        x = MARGIN
        for value, cw in zip(row, col_w, strict=True):
            if value:
                lines.append(text(x + 2, y - LINE_H + 3, fit(value, cw - 4, FONT_SIZE), FONT_SIZE))
            x += cw
        lines.append(b"0.9 G 0.3 w %.2f %.2f m %.2f %.2f l S 0 G" % (MARGIN, y - LINE_H, MARGIN + usable, y - LINE_H))
        y -= LINE_H
    page_count += 1
    lines.append(text(PAGE_W - MARGIN - 40, MARGIN - 10, f"page {page_count}", 7))
    yield page(lines)

    kid_refs = " ".join(f"{k} 0 R" for k in kids)
    yield w.obj(2, f"<< /Type /Pages /Kids [{kid_refs}] /Count {len(kids)} >>".encode())
    xref_at = w.position
    size = next_obj
    entries = [b"0000000000 65535 f \n"]
    for number in range(1, size):
        entries.append(b"%010d 00000 n \n" % w.offsets[number])
    yield w.raw(b"xref\n0 %d\n" % size + b"".join(entries))
    yield w.raw(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref_at))

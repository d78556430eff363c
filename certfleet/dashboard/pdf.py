"""Table PDFs with every character kept: fpdf2 with embedded, subset Unicode fonts.

DejaVu Sans (Debian fonts-dejavu-core) draws Latin, Greek, Cyrillic, symbols such as ☕ and combining accents;
characters it lacks (Chinese, Japanese, Korean) are drawn with WenQuanYi Micro Hei (Debian fonts-wqy-microhei,
a 5 MB font collection), loaded only when a row needs it. The old hand-written writer used Helvetica/WinAnsi, so
`北京 ☕` came out as `?? ?` (issue 11 #8). Text is drawn exactly as given (a decomposed accent stays e + U+0301),
so copying text out of the PDF gives back the stored value.

fpdf2 builds the document in memory before writing it and costs about 0.5 ms per row here, so a PDF holds at most
`MAX_ROWS` rows (export.py counts the rows and refuses larger exports before anything is written, pointing to
Excel, which has no cap): at the cap a PDF takes seconds and about 100 MB (README, Performance).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont

MAX_ROWS = 10_000  # about 220 pages: a report to read or print; Excel takes any number of rows

PAGE_W, PAGE_H = 842.0, 595.0  # A4 landscape, points
MARGIN = 28.0
FONT_SIZE = 7.5
LINE_H = 11.0
ELLIPSIS = "\u2026"

# Characters no font draws (NUL and other controls, lone surrogates): shown as the `_xHHHH_` escapes the Excel
# export uses, so they are visible instead of silently missing. Tabs and line breaks become spaces (one line a cell).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

_FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


@dataclass(frozen=True)
class FontFile:
    name: str  # the file name, found under one of _FONT_DIRS
    package: str  # the Debian package that installs it


REGULAR = FontFile("DejaVuSans.ttf", "fonts-dejavu-core")
BOLD = FontFile("DejaVuSans-Bold.ttf", "fonts-dejavu-core")
FALLBACK = FontFile("wqy-microhei.ttc", "fonts-wqy-microhei")  # font 0 of the collection: Micro Hei


class MissingFontError(RuntimeError):
    """A font the PDF export needs is not installed."""


def font_path(font: FontFile) -> Path:
    """Where the font file is; a clear error naming the package when it is missing."""
    for folder in _FONT_DIRS:
        if folder.is_dir():
            found = next(iter(sorted(folder.rglob(font.name))), None)
            if found is not None:
                return found
    raise MissingFontError(
        f"PDF export needs the font {font.name} (Debian package {font.package}); install it with "
        f"scripts/install-system-packages.sh or apt-get install {font.package}"
    )


def check_fonts() -> None:
    """Raises MissingFontError unless every font file is present (export.py calls it before answering)."""
    for font in (REGULAR, BOLD, FALLBACK):
        font_path(font)


class _Table:
    """Draws runs of text, each in the first font that has its characters, and measures them the same way."""

    def __init__(self) -> None:
        self.pdf = FPDF(orientation="L", unit="pt", format=(PAGE_H, PAGE_W))
        self.pdf.set_auto_page_break(False)
        self.pdf.set_compression(True)
        self.pdf.add_font("body", "", str(font_path(REGULAR)))
        self.pdf.add_font("body", "B", str(font_path(BOLD)))
        self.fonts: dict[str, TTFFont] = {"": self._font("body"), "B": self._font("bodyB")}
        self.fallback: TTFFont | None = None
        self.current: tuple[str, str, float] | None = None  # the font set last, so it is set only on change
        self.fitted: dict[tuple[str, float, float, bool], str] = {}  # statuses, bots, CAs repeat row after row

    def _font(self, key: str) -> TTFFont:
        font = self.pdf.fonts[key]
        assert isinstance(font, TTFFont)
        return font

    def _fallback(self) -> TTFFont:
        if self.fallback is None:  # 5 MB of CJK glyphs: read only when a row needs one
            self.pdf.add_font("fallback", "", str(font_path(FALLBACK)), collection_font_number=0)
            self.fallback = self._font("fallback")
        return self.fallback

    def runs(self, text: str, bold: bool) -> list[tuple[str, TTFFont, str]]:
        """(family, font, text) pieces; a combining mark stays in the font of the letter it belongs to."""
        main = self.fonts["B" if bold else ""]
        family = "body"
        if text.isascii():  # DejaVu has every ASCII character: the common case needs no per-character look-up
            return [(family, main, text)]
        out: list[tuple[str, TTFFont, str]] = []
        for ch in text:
            code = ord(ch)
            if out and unicodedata.combining(ch) and code in out[-1][1].cmap:
                family, font = out[-1][0], out[-1][1]
            elif code in main.cmap:
                family, font = "body", main
            else:
                fallback = self._fallback()
                if code in fallback.cmap:
                    family, font = "fallback", fallback
                else:  # neither font draws it (most emoji): its code as an escape, visible and copyable
                    family, font, ch = "body", main, f"_x{code:04X}_"
            if out and out[-1][1] is font:
                out[-1] = (family, font, out[-1][2] + ch)
            else:
                out.append((family, font, ch))
        return out

    def width(self, text: str, size: float, bold: bool = False) -> float:
        return sum(sum(font.cw[ord(ch)] for ch in piece) for _, font, piece in self.runs(text, bold)) * size / 1000

    def fit(self, text: str, width: float, size: float, bold: bool = False) -> str:
        """The text on one line, cut with an ellipsis where it is wider than the column."""
        key = (text, width, size, bold)
        fitted = self.fitted.get(key)
        if fitted is None:
            if len(self.fitted) > 20_000:
                self.fitted.clear()
            fitted = self.fitted[key] = self._fit(text, width, size, bold)
        return fitted

    def _fit(self, text: str, width: float, size: float, bold: bool) -> str:
        text = " ".join(_INVISIBLE.sub(lambda m: f"_x{ord(m.group()):04X}_", text).split())
        if self.width(text, size, bold) <= width:
            return text
        room = width - self.width(ELLIPSIS, size, bold)
        low, high = 0, len(text)  # the longest prefix that fits, by halving
        while low < high:
            mid = (low + high + 1) // 2
            if self.width(text[:mid], size, bold) <= room:
                low = mid
            else:
                high = mid - 1
        while low and unicodedata.combining(text[low - 1 : low] or " "):
            low -= 1  # never separate an accent from the letter before it
        return text[:low] + ELLIPSIS

    def text(self, x: float, y: float, text: str, size: float, bold: bool = False) -> None:
        for family, font, piece in self.runs(text, bold):
            wanted = (family, "B" if bold and family == "body" else "", size)
            if wanted != self.current:
                self.pdf.set_font(*wanted)
                self.current = wanted
            self.pdf.text(x, y, piece)
            x += sum(font.cw[ord(ch)] for ch in piece) * size / 1000


def table_pdf(
    title: str,
    subtitle_lines: Sequence[str],
    headers: Sequence[str],
    widths: Sequence[float],
    rows: Iterable[Sequence[str]],
) -> Iterator[bytes]:
    """The PDF of a table: a title block, a header row repeated on every page, then the rows (at most MAX_ROWS).

    Yields the finished file in pieces."""
    t = _Table()
    pdf = t.pdf
    usable = PAGE_W - 2 * MARGIN
    total = sum(widths) or 1.0
    col_w = [usable * w / total for w in widths]

    def header_block(first: bool) -> float:
        pdf.add_page()
        t.current = None  # a new page starts without a font
        y = MARGIN
        if first:
            t.text(MARGIN, y + 14, t.fit(title, usable, 14, True), 14, True)
            y += 22
            for sub in subtitle_lines:
                t.text(MARGIN, y + 9, t.fit(sub, usable, 8.5), 8.5)
                y += 12
            y += 4
        else:
            t.text(MARGIN, y + 8, t.fit(title, usable, 8, True), 8, True)
            y += 14
        pdf.set_fill_color(217, 224, 237)
        pdf.rect(MARGIN, y, usable, LINE_H + 2, style="F")
        x = MARGIN
        for head, cw in zip(headers, col_w, strict=True):
            t.text(x + 2, y + LINE_H - 1, t.fit(head, cw - 4, FONT_SIZE, True), FONT_SIZE, True)
            x += cw
        return y + LINE_H + 4

    def footer() -> None:
        t.text(PAGE_W - MARGIN - 40, PAGE_H - MARGIN + 10, f"page {pdf.page_no()}", 7)

    pdf.set_draw_color(230)
    pdf.set_line_width(0.3)
    y = header_block(True)
    for n, row in enumerate(rows, 1):
        if n > MAX_ROWS:
            raise ValueError(f"a PDF holds at most {MAX_ROWS:,} rows")  # export.py refuses before this
        if y + LINE_H > PAGE_H - MARGIN - 12:
            footer()
            y = header_block(False)
        x = MARGIN
        for value, cw in zip(row, col_w, strict=True):
            if value:
                t.text(x + 2, y + LINE_H - 3, t.fit(value, cw - 4, FONT_SIZE), FONT_SIZE)
            x += cw
        pdf.line(MARGIN, y + LINE_H, MARGIN + usable, y + LINE_H)
        y += LINE_H
    footer()
    data = pdf.output()
    for start in range(0, len(data), 256 * 1024):
        yield bytes(data[start : start + 256 * 1024])

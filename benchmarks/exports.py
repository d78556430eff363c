"""Export writers side by side, in one run: certfleet's hand-written .xlsx writer, XlsxWriter in constant_memory
mode writing the same workbook, and the fpdf2 PDF at its row cap.

Prints one JSON line: for each writer the seconds, the peak RSS of a child process that does nothing else, and
the file size; `xlsx_speedup` is XlsxWriter's time divided by the hand-written writer's.

    uv run python benchmarks/exports.py              # 100,000 rows x 14 columns for Excel
    uv run python benchmarks/exports.py --rows 20000

The rows are generated (no database), shaped like the certificate list: names, bots, issuers, dates, numbers,
tags, some Unicode and some formula-like text (which both Excel writers give the quote-prefix style).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADERS = [
    "CN / SAN Name", "Discovery Bot", "Provisioning Bot", "Issuer CA", "CA Type", "Certificate Location",
    "Signature Algorithm", "Expires On", "Expires Within", "Order ID", "Organization", "Tags", "Status", "Batch Name",
]  # fmt: skip
WIDTHS = [32, 20, 20, 26, 12, 28, 20, 20, 14, 16, 20, 20, 18, 20]
START = datetime(2026, 1, 1)


def rows(n: int) -> Iterator[list[Any]]:
    for i in range(n):
        yield [
            f"web-{i:06d}.example.com",
            f"bot-{i % 2000:05d}",
            "Not Mapped" if i % 7 == 0 else f"bot-{(i * 7) % 2000:05d}",
            "Example Issuing CA 2025",
            "Private" if i % 3 else "Public",
            f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:443",
            "sha256WithRSAEncryption",
            START + timedelta(minutes=i),
            i % 400,
            f"ord-{i}",
            "Ünïcødé Café 北京 ☕" if i % 50 == 0 else "Example Org",
            "=cmd|' /C calc'!A0" if i % 97 == 0 else "env=prod, region=eu",
            "Deployed",
            f"q{i % 4 + 1}-2026",
        ]


def handwritten(path: Path, n: int) -> None:
    from certfleet.dashboard.xlsx import write_xlsx

    write_xlsx(path, "Certificates", HEADERS, WIDTHS, rows(n), lambda count: [("Rows", count)])


def xlsxwriter(path: Path, n: int) -> None:
    import xlsxwriter as xw

    wb = xw.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False})
    ws = wb.add_worksheet("Certificates")
    bold = wb.add_format({"bold": True})
    date = wb.add_format({"num_format": "dd-mmm-yyyy hh:mm"})
    quoted = wb.add_format({"quote_prefix": True})
    for col, width in enumerate(WIDTHS):
        ws.set_column(col, col, width)
    ws.freeze_panes(1, 0)
    for col, head in enumerate(HEADERS):
        ws.write_string(0, col, head, bold)
    count = 0
    for r, values in enumerate(rows(n), 1):
        count += 1
        for col, value in enumerate(values):
            if isinstance(value, datetime):
                ws.write_datetime(r, col, value, date)
            elif isinstance(value, int):
                ws.write_number(r, col, value)
            elif value.startswith(("=", "+", "-", "@", "\t", "\r")):
                ws.write_string(r, col, value, quoted)
            else:
                ws.write_string(r, col, value)
    ws.autofilter(0, 0, count, len(HEADERS) - 1)
    about = wb.add_worksheet("About")
    about.write_string(0, 0, "Rows")
    about.write_number(0, 1, count)
    wb.close()


def pdf_at_cap(path: Path, n: int) -> None:
    from certfleet.dashboard import pdf

    def text_rows() -> Iterator[list[str]]:
        for values in rows(min(n, pdf.MAX_ROWS)):
            yield [v.strftime("%d-%b-%Y %H:%M") if isinstance(v, datetime) else str(v) for v in values]

    with path.open("wb") as fh:
        for chunk in pdf.table_pdf("Certificates", ["Filter: none"], HEADERS, [float(w) for w in WIDTHS], text_rows()):
            fh.write(chunk)


WRITERS = {"handwritten": (handwritten, "xlsx"), "xlsxwriter": (xlsxwriter, "xlsx"), "pdf": (pdf_at_cap, "pdf")}


def child(writer: str, n: int) -> None:
    """Runs one writer in this process only, so the peak RSS is its own."""
    func, ext = WRITERS[writer]
    for module in ("xlsxwriter", "certfleet.dashboard.xlsx", "certfleet.dashboard.pdf"):
        importlib.import_module(module)  # before the clock starts: only the writing is measured
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"out.{ext}"
        t0 = time.perf_counter()
        func(path, n)
        seconds = time.perf_counter() - t0
        size = path.stat().st_size
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s": round(seconds, 2), "peak_mb": round(peak_mb, 1), "bytes": size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", choices=sorted(WRITERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows)
        return
    from certfleet.dashboard import pdf

    result: dict[str, Any] = {"rows": args.rows, "columns": len(HEADERS), "pdf_rows": min(args.rows, pdf.MAX_ROWS)}
    for writer in WRITERS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", writer, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        result[writer] = json.loads(done.stdout.strip().splitlines()[-1])
    result["xlsx_speedup"] = round(result["xlsxwriter"]["s"] / result["handwritten"]["s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

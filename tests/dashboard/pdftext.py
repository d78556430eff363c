"""The text of a PDF as poppler's pdftotext reads it (Debian poppler-utils): what a user copying from it gets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def pdf_text(data: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: run scripts/install-system-packages.sh (Debian package poppler-utils)"
    path = tmp_path / "export.pdf"
    path.write_bytes(data)
    done = subprocess.run([tool, "-enc", "UTF-8", str(path), "-"], capture_output=True, timeout=60, check=True)
    return done.stdout.decode("utf-8")

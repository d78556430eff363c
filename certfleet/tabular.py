"""CSV and Excel files read as tables of text, for the bulk imports (S/MIME users, certificate requests).

pandas reads every cell as text with no NA guessing, so a value is exactly what the cell holds (nothing trimmed,
"NA" stays "NA", "007" stays "007"). Rows are numbered as a spreadsheet numbers them (the header is the first row
that holds anything, row 1 in most files), blank rows included; a row with no value at all asks for nothing and
is left out.

pandas' own header handling is not used, because it changes what the file says without a word: a CSV whose rows
all have one value more than the header (a trailing comma) gets its first column taken as the row labels, every
value then shifted one column to the left; a name given twice comes back as "name.1"; blank lines are dropped, so
the row numbers of later rows are wrong. Here a name given twice, and a value in a column the header does not
name (a comma too many), are refused, naming the column or row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from certfleet.fields import InputError

EXTENSIONS = (".csv", ".txt", ".xlsx", ".xlsm")


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (spreadsheet row number, column -> cell text)


def read_table(data: bytes, filename: str, *, max_rows: int) -> Table:
    """The file's header and rows; InputError(field="file") when it cannot be read, its header or a row does not
    fit, or it holds too many rows."""
    cells = _cells(data, filename)
    header_at = next((i for i, row in enumerate(cells) if any(row)), None)
    if header_at is None:
        raise InputError("file: the file holds no header row", field="file")
    named = _named_columns(cells[header_at])
    rows: list[tuple[int, dict[str, str]]] = []
    for index in range(header_at + 1, len(cells)):
        row = cells[index]
        if not any(row):
            continue  # an empty row asks for nothing
        number = index + 1  # spreadsheets count from 1
        unnamed = next((k for k, value in enumerate(row) if value and k not in named), None)
        if unnamed is not None:
            raise InputError(
                f"file: row {number} has a value in column {unnamed + 1}, which has no name in the header row "
                "(a comma too many?)",
                field="file",
            )
        rows.append((number, {name: row[k] if k < len(row) else "" for k, name in named.items()}))
    if len(rows) > max_rows:
        raise InputError(f"file: {len(rows)} rows, at most {max_rows} at a time", field="file")
    if not rows:
        raise InputError("file: no rows under the header", field="file")
    return Table(list(named.values()), rows)


def _named_columns(header: list[str]) -> dict[int, str]:
    """Column index -> name; a name given twice is refused. An empty name is no column (a value under it is
    refused by read_table, naming the row)."""
    named: dict[int, str] = {}
    first_of: dict[str, int] = {}
    for k, name in enumerate(header):
        if name == "":
            continue
        if name in first_of:
            raise InputError(
                f"file: the header row names {name!r} twice (columns {first_of[name] + 1} and {k + 1})", field="file"
            )
        first_of[name] = k
        named[k] = name
    return named


def _cells(data: bytes, filename: str) -> list[list[str]]:
    """Every row of the file as cell texts (rows may differ in length), blank rows included."""
    import pandas as pd  # loaded on first use: the web process and the flows that never import pay nothing

    lower = filename.lower()
    try:
        if lower.endswith((".xlsx", ".xlsm")):
            frame = pd.read_excel(
                io.BytesIO(data), header=None, dtype=str, keep_default_na=False, na_filter=False, engine="openpyxl"
            )
        elif lower.endswith((".csv", ".txt")):
            # pandas takes the first row's width for every row: the widest row's is given, so a longer row is read
            # whole (and refused by read_table when it holds a value beyond the header) instead of failing pandas.
            frame = pd.read_csv(
                io.BytesIO(data),
                header=None,
                names=range(max(_csv_width(data), 1)),
                index_col=False,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
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
    return [[_text(v) for v in record] for record in frame.itertuples(index=False, name=None)]


def _csv_width(data: bytes) -> int:
    """The number of values of the CSV's longest row (quoted commas and line breaks are inside a value)."""
    try:
        return max((len(row) for row in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))), default=0)
    except csv.Error as exc:
        raise InputError(f"file: the CSV file is malformed: {exc}", field="file") from None


def _text(value: Any) -> str:
    return "" if value is None else str(value)

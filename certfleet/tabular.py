"""CSV and Excel files read as tables of text, for the bulk imports (S/MIME users, certificate requests).

pandas reads every cell as text with no NA guessing, so a value is exactly what the cell holds (nothing trimmed,
"NA" stays "NA", "007" stays "007"). Rows are numbered as a spreadsheet numbers them: the header is row 1.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from certfleet.fields import InputError

EXTENSIONS = (".csv", ".txt", ".xlsx", ".xlsm")


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (spreadsheet row number, column -> cell text)


def read_table(data: bytes, filename: str, *, max_rows: int) -> Table:
    """The file's header and rows; InputError(field="file") when it cannot be read or holds too many rows."""
    import pandas as pd  # loaded on first use: the web process and the flows that never import pay nothing

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
    if len(frame) > max_rows:
        raise InputError(f"file: {len(frame)} rows, at most {max_rows} at a time", field="file")
    if len(frame) == 0:
        raise InputError("file: no rows under the header", field="file")
    columns = [str(c) for c in frame.columns]
    rows = [
        (index + 2, {str(k): "" if v is None else str(v) for k, v in record.items()})
        for index, record in enumerate(frame.to_dict("records"))
    ]
    return Table(columns, rows)

"""The type of a row id taken from a path or query: a database id is a signed 64-bit integer.

A larger number reached the database and failed there (SQLite: OverflowError, PostgreSQL: integer out of range),
answering 500; bounded here it is a 422 naming the parameter (found by tests/dashboard/test_api_fuzz.py).
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le

MAX_ROW_ID = 2**63 - 1

RowId = Annotated[int, Ge(-MAX_ROW_ID - 1), Le(MAX_ROW_ID)]

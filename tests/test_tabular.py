"""The bulk imports' table reader: every cell as written, rows numbered as a spreadsheet numbers them, and what
pandas would silently change (a comma too many, a name given twice, blank lines) refused or counted."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from certfleet.fields import InputError
from certfleet.tabular import read_table


def _csv(text: str) -> list[tuple[int, dict[str, str]]]:
    return read_table(text.encode(), "t.csv", max_rows=10).rows


def test_blank_rows_keep_the_numbers_of_the_rows_below_them_and_are_left_out() -> None:
    rows = _csv("a,b\n1,2\n\n3,4\n,\n5,6\n")
    assert rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "3", "b": "4"}), (6, {"a": "5", "b": "6"})]
    assert _csv("\n\na,b\n1,2\n") == [(4, {"a": "1", "b": "2"})]  # the header is the first row holding anything


def test_a_quoted_line_break_is_inside_one_value_and_one_row() -> None:
    assert _csv('a,b\n"x\ny",2\n3,4\n') == [(2, {"a": "x\ny", "b": "2"}), (3, {"a": "3", "b": "4"})]


def test_a_trailing_comma_on_every_row_shifts_nothing() -> None:
    # pandas' own header handling took the first column as row labels here: "1" was lost, "a" read "2"
    assert _csv("a,b\n1,2,\n3,4,\n") == [(2, {"a": "1", "b": "2"}), (3, {"a": "3", "b": "4"})]
    assert _csv("a,b,\n1,2\n") == [(2, {"a": "1", "b": "2"})]


def test_cells_are_text_exactly_as_written_and_short_rows_end_in_empty_cells() -> None:
    assert _csv("\ufeffa,b\r\n NA , 007 \r\n") == [(2, {"a": " NA ", "b": " 007 "})]
    assert _csv("a,b\n1\n") == [(2, {"a": "1", "b": ""})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2,3\n", "row 2 has a value in column 3, which has no name in the header row"),
        ("a,b\n1,2\n4,5,6\n", "row 3 has a value in column 3"),
        ("a,,b\n1,x,2\n", "row 2 has a value in column 2"),
        ("a,a\n1,2\n", "the header row names 'a' twice (columns 1 and 2)"),
        ("", "no header row"),
        ("\n,\n", "no header row"),
        ("a,b\n\n,\n", "no rows under the header"),
    ],
)
def test_what_pandas_would_change_is_refused_naming_the_row_or_column(text: str, message: str) -> None:
    with pytest.raises(InputError) as refused:
        read_table(text.encode(), "t.csv", max_rows=10)
    assert message in str(refused.value)
    assert refused.value.field == "file"


def test_an_unnamed_column_without_values_is_no_column() -> None:
    table = read_table(b"a,,b\n1,,2\n", "t.csv", max_rows=10)
    assert table.columns == ["a", "b"]
    assert table.rows == [(2, {"a": "1", "b": "2"})]


def test_the_row_limit_counts_rows_that_ask_for_something() -> None:
    assert len(read_table(b"a\n1\n\n2\n", "t.csv", max_rows=2).rows) == 2
    with pytest.raises(InputError, match="3 rows, at most 2"):
        read_table(b"a\n1\n2\n3\n", "t.csv", max_rows=2)


def _xlsx(cells: dict[str, object]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for where, value in cells.items():
        sheet[where] = value
    data = io.BytesIO()
    book.save(data)
    return data.getvalue()


def test_an_excel_sheet_numbers_rows_as_the_sheet_does() -> None:
    data = _xlsx({"A2": "a", "B2": "b", "A3": "1", "B3": 2, "A5": "x"})
    table = read_table(data, "t.xlsx", max_rows=10)
    assert table.rows == [(3, {"a": "1", "b": "2"}), (5, {"a": "x", "b": ""})]


def test_an_excel_sheet_with_a_name_twice_or_a_value_beyond_the_header_is_refused() -> None:
    with pytest.raises(InputError, match="names 'a' twice"):
        read_table(_xlsx({"A1": "a", "B1": "a", "A2": "1"}), "t.xlsx", max_rows=10)
    with pytest.raises(InputError, match="row 3 has a value in column 3"):
        read_table(_xlsx({"A1": "a", "B1": "b", "A2": "1", "C3": "tail"}), "t.xlsx", max_rows=10)

"""The Tags filter: a condition on the elements of a JSON list column, the same on SQLite and PostgreSQL.

A LIKE over the column's JSON text cannot work: the JSON holds `"\\u00dc"` for `Ü` and `\\"` for a quote, so real
tags were missed (issue 11 #6). The condition looks at the decoded elements instead:

    tags:eq:VALUE        one element equals VALUE exactly (case and spaces count)
    tags:contains:TEXT   one element contains TEXT, ignoring case

Both sides are compared in Unicode NFC, so `Café` typed with a precomposed é finds a tag stored with `e` + a
combining accent and the other way round. Only the comparison is normalised: stored values are never changed
(they are kept exactly as sent). Numbers in the list (a server's ports) compare as their decimal text.

SQLite: `json_each` with the `certfleet_nfc` / `certfleet_nfc_lower` functions that `certfleet.models.db`
registers on every SQLite connection. PostgreSQL: `json_array_elements_text` with the built-in `normalize(x, NFC)`
(PostgreSQL 13+, UTF-8 databases) and `lower`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import Boolean, ColumnElement, String, cast, exists, func, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

OPERATORS = ("eq", "contains")


def like_escape(text: str) -> str:
    """`text` with LIKE's wildcards taken literally (used with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfc_lower(text: str) -> str:
    """The form `contains` compares in; the SQLite function of the same name calls this too."""
    return nfc(text).lower()


class TagMatch(ColumnElement[bool]):
    """`EXISTS (one element of <tags> matches)`, compiled per dialect below."""

    type = Boolean()
    inherit_cache = False  # compiled per dialect from its parts; the statement is simply not cached

    def __init__(self, tags: Any, op: str, value: str) -> None:
        if op not in OPERATORS:
            raise ValueError(f"tag operator must be one of {OPERATORS}, not {op!r}")
        self.tags, self.tag_op, self.value = tags, op, value


def tag_match(tags: Any, op: str, value: str) -> ColumnElement[bool]:
    return TagMatch(tags, op, value)


def _element_condition(element: ColumnElement[str], op: str, value: str, lower_nfc: Any, nfc_sql: Any) -> Any:
    if op == "eq":
        return nfc_sql(element) == nfc(value)
    return lower_nfc(element).like(f"%{like_escape(nfc_lower(value))}%", escape="\\")


@compiles(TagMatch, "sqlite")
def _sqlite(element: TagMatch, compiler: SQLCompiler, **kw: Any) -> str:
    each = func.json_each(element.tags).table_valued("value", joins_implicitly=True).alias("tag")
    text = cast(each.c.value, String)  # a number (a port) as its decimal text
    cond = _element_condition(text, element.tag_op, element.value, func.certfleet_nfc_lower, func.certfleet_nfc)
    return compiler.process(exists(select(literal_column("1")).select_from(each).where(cond)), **kw)


@compiles(TagMatch)
def _postgresql(element: TagMatch, compiler: SQLCompiler, **kw: Any) -> str:
    elements = (
        func.json_array_elements_text(element.tags)
        .table_valued("value", joins_implicitly=True)
        .render_derived(name="tag")
    )

    def nfc_sql(x: Any) -> Any:
        return func.normalize(x, literal_column("NFC"))

    def lower_nfc(x: Any) -> Any:
        return func.lower(nfc_sql(x))

    cond = _element_condition(elements.c.value, element.tag_op, element.value, lower_nfc, nfc_sql)
    return compiler.process(exists(select(literal_column("1")).select_from(elements).where(cond)), **kw)

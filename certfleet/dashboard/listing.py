"""The one list machinery every list (page, API, export) uses: columns, filters, sorting, pages, column choice.

A list is a `ListSpec`: a base `Select` (with its joins) and `Column`s, each a SQL expression with the manual's
label, a type that decides the filter operators, and whether it is a default column. Filters come as
`column:operator:value` strings (query parameter `filter`, repeatable, combined with AND), e.g.
`filter=status:eq:Active&filter=name:contains:prod`. Operators: text `contains`/`eq`; status-like `eq` (several
values joined by `|` mean any of them); dates `before`/`after` (05-Feb-2026, 2026-02-05 or ISO date-time);
numbers `eq`/`lt`/`gt`; tags `eq` (one whole tag, compared in NFC) / `contains` (tag_filter.py); the value `All`
removes that condition. Sorting: `sort=key` or `sort=-key`.
Everything runs in SQL: a COUNT for the total and LIMIT/OFFSET for the page; exports stream with `yield_per`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, false, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from certfleet.dashboard.errors import InputError
from certfleet.dashboard.tag_filter import like_escape, tag_match
from certfleet.fields import unicode_problem
from certfleet.models.orm import utcnow

# A mapped attribute (Bot.name) or any SQL expression (case(...), Bot.id.is_not(None)).
SqlExpr = ColumnElement[Any] | InstrumentedAttribute[Any]

MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 50


class ColType(enum.StrEnum):
    TEXT = "text"
    ENUM = "enum"  # fixed values (status, purpose): Equals only
    DATE = "date"
    NUMBER = "number"
    BOOL = "bool"  # Yes / No
    TAGS = "tags"  # a JSON list of strings
    DAYS_LEFT = "days_left"  # a date shown as days from now ("Expires Within"); filtered with lt/gt in days


OPERATORS: dict[ColType, tuple[str, ...]] = {
    ColType.TEXT: ("contains", "eq"),
    ColType.TAGS: ("contains", "eq"),
    ColType.ENUM: ("eq",),
    ColType.BOOL: ("eq",),
    ColType.DATE: ("before", "after"),
    ColType.NUMBER: ("eq", "lt", "gt"),
    ColType.DAYS_LEFT: ("lt", "gt"),
}
OPERATOR_LABELS = {
    "contains": "Contains",
    "eq": "Equals",
    "before": "Before",
    "after": "After",
    "lt": "Less than",
    "gt": "More than",
}
ALL = "All"


@dataclass(frozen=True)
class Column:
    key: str  # the name in URLs, the API and preferences, e.g. "status"
    label: str  # the manual's label, e.g. "Status"
    expr: SqlExpr  # selected, filtered and sorted on
    type: ColType = ColType.TEXT
    default: bool = False  # one of the manual's default columns
    choices: tuple[str, ...] = ()  # values offered for ENUM columns
    filterable: bool = True
    sortable: bool = True
    render: Callable[[Any], str] | None = None  # how a page/PDF shows the value; None: `display()`
    width: int = 18  # Excel/PDF column width in characters


@dataclass(frozen=True)
class ListSpec:
    name: str  # "bots": preferences key, export file name, API path segment
    title: str
    base: Callable[[], Select[Any]]  # the FROM with joins; columns are added by the machinery
    pk: SqlExpr  # unique, for stable order and row ids
    columns: tuple[Column, ...]
    default_sort: str = "-id"
    hidden: tuple[Column, ...] = ()  # selected for row actions, never shown (e.g. a raw status)
    # FROM without the joins, for a cheaper COUNT; used only when the filters need no table it lacks.
    count_base: Callable[[], Select[Any]] | None = None

    def column(self, key: str) -> Column:
        for c in (*self.columns, *self.hidden):
            if c.key == key:
                return c
        raise InputError(
            f"{self.title}: unknown column {key!r}; choose one of {', '.join(c.key for c in self.columns)}",
            field="filter",
        )

    @property
    def default_keys(self) -> list[str]:
        return [c.key for c in self.columns if c.default]


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: str

    def as_param(self) -> str:
        return f"{self.column}:{self.op}:{self.value}"

    def describe(self, spec: ListSpec) -> str:
        return f"{spec.column(self.column).label} {OPERATOR_LABELS.get(self.op, self.op)} {self.value}"


@dataclass
class ListQuery:
    filters: list[Filter] = field(default_factory=list)
    sort: str | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    columns: list[str] | None = None  # None: the user's choice, else the defaults


@dataclass
class Page:
    spec: ListSpec
    query: ListQuery
    columns: list[Column]
    rows: list[Mapping[str, Any]]
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


# A filter this long is a paste mistake (descriptions stop at 2,000 characters); it would be echoed back in the
# page and export titles, so it is refused before it reaches SQL.
FILTER_MAX = 10_000


def parse_filter(raw: str) -> Filter:
    # The field rules apply to filters too: a NUL or a lone surrogate would reach the database driver (PostgreSQL
    # refuses NUL in text, psycopg cannot encode a surrogate) and answer 500 instead of saying what is wrong.
    if len(raw) > FILTER_MAX:
        raise InputError(f"filter: {len(raw)} characters, at most {FILTER_MAX}", field="filter")
    problem = unicode_problem(raw)
    if problem is not None:
        raise InputError(f"filter: {problem}", field="filter")
    parts = raw.split(":", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts[:2]):
        raise InputError(f"filter {raw!r} must be column:operator:value, e.g. status:eq:Active", field="filter")
    return Filter(parts[0].strip(), parts[1].strip().lower(), parts[2].strip())


# The last page any list could have: its offset (page x per_page) stays a 64-bit integer.
MAX_PAGE = 2**63 // (MAX_PER_PAGE * 2)
MAX_DAYS_LEFT = 36_500


def parse_query(
    filters: Sequence[str] = (),
    sort: str | None = None,
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
    columns: str | Sequence[str] | None = None,
) -> ListQuery:
    if page < 1:
        raise InputError("page starts at 1", field="page")
    if page > MAX_PAGE:  # its row offset must fit the database's 64-bit integer (a larger one failed with 500)
        raise InputError(f"page is at most {MAX_PAGE}", field="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InputError(f"per_page must be between 1 and {MAX_PER_PAGE}", field="per_page")
    chosen: list[str] | None = None
    if isinstance(columns, str):
        chosen = [c.strip() for c in columns.split(",") if c.strip()] or None
    elif columns:
        chosen = [c for c in columns if c]
    return ListQuery([parse_filter(f) for f in filters if f.strip()], sort or None, page, per_page, chosen)


def parse_date(value: str) -> tuple[datetime, bool]:
    """Returns (moment, is_whole_day). Accepts 05-Feb-2026, 2026-02-05, 05/02/2026 or ISO date-time."""
    for fmt in ("%d-%b-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC), True
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{value!r} is not a date: write it like 05-Feb-2026 or 2026-02-05", field="filter") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def _condition(spec: ListSpec, f: Filter) -> ColumnElement[bool] | None:
    col = spec.column(f.column)
    if not col.filterable:
        raise InputError(f"{spec.title}: {col.label} cannot be filtered on", field="filter")
    allowed = OPERATORS[col.type]
    if f.op not in allowed:
        names = " or ".join(OPERATOR_LABELS[o] for o in allowed)
        raise InputError(f"{col.label} can be filtered with {names}, not {f.op!r}", field="filter")
    if f.value == ALL or f.value == "":
        return None
    expr = col.expr
    if col.type is ColType.TAGS:
        return tag_match(expr, f.op, f.value)
    if col.type is ColType.TEXT:
        if f.op == "contains":
            return func.lower(expr).like(f"%{like_escape(f.value.lower())}%", escape="\\")
        return func.lower(expr) == f.value.lower()
    if col.type is ColType.ENUM:
        wanted = [v.strip() for v in f.value.split("|") if v.strip()]
        unknown = [v for v in wanted if col.choices and v not in col.choices]
        if unknown:
            raise InputError(
                f"{col.label} has no value {unknown[0]!r}; choose one of {', '.join(col.choices)}", field="filter"
            )
        return expr.in_(wanted) if len(wanted) > 1 else expr == wanted[0]
    if col.type is ColType.BOOL:
        if f.value.lower() not in ("yes", "no", "true", "false"):
            raise InputError(f"{col.label} is Yes or No, not {f.value!r}", field="filter")
        return expr.is_(f.value.lower() in ("yes", "true"))
    if col.type is ColType.DATE:
        moment, whole_day = parse_date(f.value)
        if f.op == "before":
            return expr < moment
        if whole_day and moment.date() == date.max:
            return false()  # nothing is after the last day there is (its next day cannot be computed)
        return expr >= moment + timedelta(days=1) if whole_day else expr > moment
    try:
        number = float(f.value)
    except ValueError:
        raise InputError(f"{col.label} needs a number, not {f.value!r}", field="filter") from None
    if not math.isfinite(number):
        raise InputError(f"{col.label} needs a finite number, not {f.value!r}", field="filter")
    if col.type is ColType.DAYS_LEFT:
        if abs(number) > MAX_DAYS_LEFT:  # a date that far away cannot be computed (it failed with 500)
            raise InputError(f"{col.label}: at most {MAX_DAYS_LEFT} days either way, not {f.value!r}", field="filter")
        moment = utcnow() + timedelta(days=number)
        return and_(expr.is_not(None), expr < moment) if f.op == "lt" else expr > moment
    return {"eq": expr == number, "lt": expr < number, "gt": expr > number}[f.op]


def where_clause(spec: ListSpec, filters: Sequence[Filter]) -> list[ColumnElement[bool]]:
    conditions = [_condition(spec, f) for f in filters]
    return [c for c in conditions if c is not None]


def chosen_columns(spec: ListSpec, keys: Sequence[str] | None) -> list[Column]:
    if not keys:
        return [c for c in spec.columns if c.default] or list(spec.columns)
    cols = [spec.column(k) for k in keys]
    return [c for c in cols if c in spec.columns] or [c for c in spec.columns if c.default]


def order_by(spec: ListSpec, sort: str | None) -> list[Any]:
    key = sort or spec.default_sort
    desc = key.startswith("-")
    key = key.lstrip("-")
    if key == "id":
        return [spec.pk.desc() if desc else spec.pk.asc()]
    try:
        col = spec.column(key)
    except InputError as exc:  # the mistake is in the sort parameter, not a filter
        raise InputError(exc.message, field="sort") from exc
    if not col.sortable:
        raise InputError(f"{spec.title} cannot be sorted by {col.label}", field="sort")
    expr = col.expr if col.type is not ColType.TAGS else cast(col.expr, String)
    # Then the primary key keeps pages stable (and lets an index on the column serve the ORDER BY).
    return [expr.desc() if desc else expr.asc(), spec.pk.desc() if desc else spec.pk.asc()]


def _select(spec: ListSpec, cols: Sequence[Column]) -> Select[Any]:
    exprs = [spec.pk.label("id")] + [c.expr.label(c.key) for c in (*cols, *spec.hidden) if c.key != "id"]
    return spec.base().with_only_columns(*exprs, maintain_column_froms=True)


def count(session: Session, spec: ListSpec, filters: Sequence[Filter]) -> int:
    """The number of rows `fetch`/`stream` return over all pages."""
    where = where_clause(spec, filters)
    if spec.count_base is not None:
        cheap = spec.count_base()
        stmt = cheap.with_only_columns(func.count(spec.pk), maintain_column_froms=True).where(*where)
        # A filter on a joined column (a bot's name) would add that table to the FROM list without its join:
        # a cartesian product that multiplies the total. Then only the full FROM with its joins is right.
        if len(stmt.get_final_froms()) == len(cheap.get_final_froms()):
            return int(session.scalar(stmt) or 0)
    stmt = spec.base().with_only_columns(func.count(spec.pk), maintain_column_froms=True).where(*where)
    return int(session.scalar(stmt) or 0)


def fetch(session: Session, spec: ListSpec, query: ListQuery) -> Page:
    cols = chosen_columns(spec, query.columns)
    where = where_clause(spec, query.filters)
    stmt = (
        _select(spec, cols)
        .where(*where)
        .order_by(*order_by(spec, query.sort))
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    )
    rows: list[Mapping[str, Any]] = [dict(r._mapping) for r in session.execute(stmt)]
    return Page(spec, query, cols, rows, count(session, spec, query.filters))


def stream(session: Session, spec: ListSpec, query: ListQuery, batch: int = 1000) -> Iterator[Mapping[str, Any]]:
    """Every filtered row in order, fetched `batch` at a time (server-side cursor on PostgreSQL)."""
    cols = chosen_columns(spec, query.columns)
    stmt = _select(spec, cols).where(*where_clause(spec, query.filters)).order_by(*order_by(spec, query.sort))
    for row in session.execute(stmt.execution_options(yield_per=batch)):
        yield dict(row._mapping)


def display(col: Column, value: Any) -> str:
    """The text a page or PDF shows for a value."""
    if col.render is not None:
        return col.render(value)
    if value is None:
        return ""
    if col.type is ColType.DAYS_LEFT:
        return f"{(value - utcnow()).days} days" if isinstance(value, datetime) else ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%d-%b-%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d-%b-%Y")
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def json_value(col: Column, value: Any) -> Any:
    """The value the API returns: ISO dates, plain strings for enums, lists as lists."""
    if value is None:
        return None
    if col.type is ColType.DAYS_LEFT and isinstance(value, datetime):
        return (value - utcnow()).days
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if col.render is not None and not isinstance(value, int | float | bool | list):
        return col.render(value)
    return value


def excel_value(col: Column, value: Any) -> Any:
    """The value an Excel cell gets: real dates (naive UTC, Excel has no zones), numbers, text."""
    if value is None:
        return None
    if col.type is ColType.DAYS_LEFT and isinstance(value, datetime):
        return (value - utcnow()).days
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int | float) and col.render is None:
        return value
    return display(col, value)


def as_json(page: Page) -> dict[str, Any]:
    return {
        "items": [{c.key: json_value(c, row[c.key]) for c in [_ID, *page.columns]} for row in page.rows],
        "total": page.total,
        "page": page.query.page,
        "per_page": page.query.per_page,
        "pages": page.pages,
        "columns": [{"key": c.key, "label": c.label} for c in page.columns],
        "filters": [f.as_param() for f in page.query.filters],
    }


_ID = Column("id", "Id", select(1).scalar_subquery(), ColType.NUMBER)


def describe(spec: ListSpec, query: ListQuery) -> str:
    """The filter in words, for export titles: 'Status Equals Active AND Purpose Equals Provisioning'."""
    parts = [f.describe(spec) for f in query.filters if f.value not in (ALL, "")]
    return " AND ".join(parts) if parts else "no filter (all rows)"

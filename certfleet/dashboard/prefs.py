"""Per-user preferences: the columns chosen for each list (Customize Columns)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from certfleet.dashboard import listing
from certfleet.models.orm import User


def chosen_columns(session: Session, user_id: int, list_name: str) -> list[str] | None:
    user = session.get(User, user_id)
    if user is None:
        return None
    value = (user.preferences or {}).get("columns", {}).get(list_name)
    return [str(v) for v in value] if isinstance(value, list) else None


def save_columns(session: Session, user_id: int, spec: listing.ListSpec, keys: list[str]) -> list[str]:
    """Remembers the choice (validated against the list's columns); an empty choice means the defaults."""
    valid = [c.key for c in listing.chosen_columns(spec, keys)] if keys else []
    user = session.get(User, user_id)
    if user is None:
        return valid
    prefs = dict(user.preferences or {})
    columns = dict(prefs.get("columns", {}))
    if valid:
        columns[spec.name] = valid
    else:
        columns.pop(spec.name, None)
    prefs["columns"] = columns
    user.preferences = prefs  # a new dict, so SQLAlchemy sees the JSON change
    return valid or spec.default_keys

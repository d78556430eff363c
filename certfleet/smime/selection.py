"""Which users an smime-rollout run orders for: all awaiting, a selection (ids), or a filter.

The filter is the same object for the dashboard's form, the API body, the CLI options and the flow's parameter.
Every part narrows the set (AND): Source exactly as listed (a profile's description or "Manual Import"), the
directory profile, statuses (among those a rollout orders for), and a substring of the name or the e-mail address
(letter case ignored). Values are checked as sent, never trimmed; a part that cannot match anything (an unknown
source or profile, a status a rollout never orders for) is refused with the field named, so a typo is not a silent
empty run.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from certfleet.fields import InputError
from certfleet.input_model import InputModel
from certfleet.models import repo
from certfleet.models.orm import DirectoryProfile, SmimeStatus, SmimeUser

# What a rollout orders for: nothing ordered yet, or an order an earlier run left open.
ORDERABLE = (SmimeStatus.AWAITING_ORDER, SmimeStatus.CSR_PENDING, SmimeStatus.CERTIFICATE_ISSUED)
TEXT_MAX = 320


class UserFilter(InputModel):
    """A rollout's filter; empty parts do not narrow."""

    model_config = ConfigDict(extra="forbid")

    source: Annotated[str | None, Field(description="Source exactly as listed, e.g. a profile's description")] = None
    profile_id: Annotated[int | None, Field(description="users read from this directory profile")] = None
    status: Annotated[
        list[SmimeStatus] | None, Field(description="any of: " + ", ".join(s.value for s in ORDERABLE))
    ] = None
    text: Annotated[str | None, Field(description="part of the name or the e-mail address (any letter case)")] = None

    def is_empty(self) -> bool:
        return not (self.source or self.profile_id is not None or self.status or self.text)

    def describe(self) -> str:
        parts = []
        if self.source:
            parts.append(f"source {self.source!r}")
        if self.profile_id is not None:
            parts.append(f"profile {self.profile_id}")
        if self.status:
            parts.append("status " + "|".join(s.value for s in self.status))
        if self.text:
            parts.append(f"name or e-mail contains {self.text!r}")
        return ", ".join(parts) or "no filter"


def check(session: Session, wanted: UserFilter) -> UserFilter:
    """The filter as sent, or InputError naming the part that cannot match."""
    source_known = select(SmimeUser.id).where(SmimeUser.source == wanted.source).limit(1)
    if wanted.source and session.scalar(source_known) is None:
        raise InputError(f"source: no S/MIME user has the source {wanted.source!r}", field="source")
    if wanted.profile_id is not None:
        try:
            repo.get(session, DirectoryProfile, wanted.profile_id)
        except repo.NotFound:
            raise InputError(f"profile_id: there is no directory profile {wanted.profile_id}", "profile_id") from None
    for status in wanted.status or []:
        if status not in ORDERABLE:
            allowed = ", ".join(s.value for s in ORDERABLE)
            raise InputError(f"status: a rollout orders only for users in {allowed}, not {status.value}", "status")
    if wanted.text is not None and len(wanted.text) > TEXT_MAX:
        raise InputError(f"text: at most {TEXT_MAX} characters", field="text")
    return wanted


def conditions(wanted: UserFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if wanted.source:
        found.append(SmimeUser.source == wanted.source)
    if wanted.profile_id is not None:
        found.append(SmimeUser.profile_id == wanted.profile_id)
    if wanted.status:
        found.append(SmimeUser.status.in_(wanted.status))
    if wanted.text:
        # LIKE with the wildcards escaped; lower() on both sides, plus the exact text, since SQLite's lower()
        # folds ASCII only.
        found.append(
            or_(
                func.lower(SmimeUser.name).contains(wanted.text.lower(), autoescape=True),
                func.lower(SmimeUser.email).contains(wanted.text.lower(), autoescape=True),
                SmimeUser.name.contains(wanted.text, autoescape=True),
                SmimeUser.email.contains(wanted.text, autoescape=True),
            )
        )
    return found


def users_query(user_ids: list[int] | None, wanted: UserFilter | None, *, renewal: bool = False) -> Select[int]:
    """Users a rollout orders for: orderable (or, for a renewal, holding an installed certificate), not ignored or
    revoked, still in the directory; narrowed to `user_ids` and the filter."""
    statuses = [*ORDERABLE, SmimeStatus.CERTIFICATE_INSTALLED] if renewal else list(ORDERABLE)
    query = select(SmimeUser.id).where(SmimeUser.status.in_(statuses), SmimeUser.directory_state.is_(None))
    if user_ids is not None:
        query = query.where(SmimeUser.id.in_(user_ids))
    if wanted is not None and (parts := conditions(wanted)):
        query = query.where(and_(*parts))
    return query.order_by(SmimeUser.id)


def matching(session: Session, user_ids: list[int] | None, wanted: UserFilter | None) -> list[int]:
    return list(session.scalars(users_query(user_ids, wanted)))

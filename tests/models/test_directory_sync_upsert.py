"""The directory sync's bulk upsert (certfleet.smime.directory_sync.apply_page / finish) keeps the per-user rules
on SQLite and PostgreSQL: takeover of a manual user, an address held by another profile or another key, an
address given up and taken in the same page, a key listed twice, disabled and vanished users flagged."""

from __future__ import annotations

from sqlalchemy import select

from certfleet.connectors.directory.azure_ad import DirectoryUser
from certfleet.models.db import session_scope
from certfleet.models.orm import DirectoryProfile, SmimeStatus, SmimeUser
from certfleet.smime import directory_sync, service
from certfleet.smime.directory_sync import DISABLED, VANISHED, SyncReport


def entry(upn: str, mail: str | None = None, name: str = "Someone", enabled: bool = True) -> DirectoryUser:
    return DirectoryUser(upn, name, mail, upn, "Engineer", enabled)


def profile(name: str) -> int:
    with session_scope() as s:
        p = DirectoryProfile(name=name, client_id="c", tenant_id="t", client_secret="x")
        s.add(p)
        s.flush()
        return p.id


def apply(profile_id: int, page: list[DirectoryUser]) -> SyncReport:
    report = SyncReport()
    with session_scope() as s:
        directory_sync.apply_page(s, profile_id, page, report)
    return report


def stored() -> dict[str, tuple[object, ...]]:
    with session_scope() as s:
        return {
            u.email: (u.name, u.profile_id, u.directory_key, u.directory_state, u.source, u.status)
            for u in s.scalars(select(SmimeUser))
        }


def test_bulk_upsert_keeps_the_per_user_rules(database: str) -> None:
    ours, theirs = profile("Contoso"), profile("Fabrikam")
    with session_scope() as s:
        service.import_user(s, name="Manual Mary", email="Mary@contoso.example", designation=None, actor="t")
    apply(theirs, [entry("zed@fabrikam.example", "zed@shared.example")])

    report = apply(
        ours,
        [
            entry("mary@contoso.example", "mary@contoso.example", "Mary Directory"),  # takes the manual user over
            entry("zed@contoso.example", "zed@shared.example"),  # held by the other profile
            entry("ann@contoso.example", "ann@contoso.example", enabled=False),
            entry("ann2@contoso.example", "ANN@contoso.example"),  # Ann's address, another key
            entry("bob@contoso.example"),  # no mail: the userPrincipalName is the address
            entry("bob@contoso.example", name="Bob Twice"),  # the same key again: the later values win
        ],
    )

    assert (report.seen, report.added, report.updated, report.disabled, report.reported) == (6, 2, 2, 1, 2)
    assert any("already listed from another profile" in p for p in report.problems)
    assert any("already the address of ann@contoso.example" in p for p in report.problems)
    users = stored()
    assert users["mary@contoso.example"][:3] == ("Mary Directory", ours, "mary@contoso.example")
    assert users["ann@contoso.example"][3] == DISABLED
    assert users["bob@contoso.example"][0] == "Bob Twice"
    assert users["zed@shared.example"][1] == theirs
    assert all(u[5] is SmimeStatus.AWAITING_ORDER for u in users.values())

    # Ann gives up her address and a new user takes it in the same page; Bob is renamed; the rest is unchanged.
    report = apply(
        ours,
        [
            entry("mary@contoso.example", "mary@contoso.example", "Mary Directory"),
            entry("ann@contoso.example", "ann.new@contoso.example"),
            entry("carl@contoso.example", "ann@contoso.example"),
            entry("bob@contoso.example", name="Bob Renamed"),
        ],
    )
    assert (report.added, report.updated, report.unchanged, report.reported) == (1, 2, 1, 0)
    users = stored()
    assert users["ann.new@contoso.example"][2:4] == ("ann@contoso.example", None)
    assert users["ann@contoso.example"][2] == "carl@contoso.example"
    assert users["bob@contoso.example"][0] == "Bob Renamed"

    report = SyncReport()
    with session_scope() as s:
        directory_sync.finish(s, ours, {"mary@contoso.example", "ann@contoso.example"}, report)
    assert report.vanished == 2  # carl and bob
    users = stored()
    assert users["ann@contoso.example"][3] == VANISHED
    assert users["bob@contoso.example"][3] == VANISHED
    assert users["mary@contoso.example"][3] is None
    assert users["zed@shared.example"][3] is None  # another profile's user is not this sync's to flag
    with session_scope() as s:
        p = s.get(DirectoryProfile, ours)
        assert p is not None
        assert p.last_sync_status == "Succeeded"

"""Which delivery target each user's PKCS#12 goes to: the run's choice, else the user's directory profile's own
target, else the installation's S/MIME delivery setting (certfleet.smime.delivery).

- A directory profile may have its own target (folder, SMB share or e-mail, the same fields and checks as the
  setting; the SMB or SMTP password sealed on the profile, never returned; left out on edit of the same method,
  the stored one is kept). Cleared, its users go to the setting's target again. Manually imported users have no
  profile: the setting's target.
- A rollout run may name one target for all its users (`delivery`, a flow parameter, so it holds no secret: a
  reference to a stored target or a folder): `setting` (the installation setting), `profile:<id>` (that profile's
  own target) or `folder:<absolute path>`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from certfleet.fields import InputError
from certfleet.models import repo
from certfleet.models.orm import DirectoryProfile, SmimeUser
from certfleet.smime.delivery import (
    Target,
    current_target,
    describe,
    folder_settings,
    folder_target,
    setting_input,
    target_detail,
)

RUN_CHOICES = "setting, profile:<id> or folder:<absolute path>"
RUN_FIELD = "delivery"


def profile_target(profile: DirectoryProfile) -> Target | None:
    """The profile's own target, or None (its users go to the setting's target)."""
    if profile.delivery_method is None:
        return None
    return Target(profile.delivery_method, dict(profile.delivery_settings or {}), profile.delivery_secret)


def save_profile_delivery(session: Session, profile_id: int, body: dict[str, Any], actor: str) -> DirectoryProfile:
    """The profile's own target from a flat body (as the setting's: method and that method's fields), stored as sent
    or refused with an InputError naming the field."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    method, settings, secret = setting_input(body, profile.delivery_method, profile.delivery_secret)
    keep = profile.delivery_method == method and secret is None
    profile.delivery_method, profile.delivery_settings = method, settings
    profile.delivery_secret = profile.delivery_secret if keep else secret
    if method == "email" and not settings.get("username"):
        profile.delivery_secret = None  # no login: no password kept
    if method == "folder":
        profile.delivery_secret = None
    session.flush()
    target = profile_target(profile)
    assert target is not None
    repo.audit(session, actor=actor, action="save-profile-delivery", obj=profile,
               detail=f"{profile.name}: {describe(target)}")  # fmt: skip
    return profile


def clear_profile_delivery(session: Session, profile_id: int, actor: str) -> DirectoryProfile:
    """The profile's users go to the S/MIME delivery setting's target again."""
    profile = repo.get(session, DirectoryProfile, profile_id)
    profile.delivery_method, profile.delivery_settings, profile.delivery_secret = None, None, None
    repo.audit(session, actor=actor, action="clear-profile-delivery", obj=profile,
               detail=f"{profile.name}: the S/MIME delivery setting")  # fmt: skip
    return profile


def profile_delivery_detail(profile: DirectoryProfile) -> dict[str, Any] | None:
    """As the API and the page show it (never the secret). None: the setting's target."""
    target = profile_target(profile)
    return target_detail(target) if target is not None else None


def user_targets(session: Session, user_ids: Collection[int]) -> dict[int, Target]:
    """Each user's profile's own target, else the setting's: one query for the users' profiles, each profile's
    target and the setting read once, however many users share them."""
    found = session.execute(select(SmimeUser.id, SmimeUser.profile_id).where(SmimeUser.id.in_(user_ids)))
    profiles = {user_id: profile_id for user_id, profile_id in found}
    own = {
        profile.id: profile_target(profile)
        for profile in session.scalars(select(DirectoryProfile).where(DirectoryProfile.id.in_(set(profiles.values()))))
    }
    setting: Target | None = None
    targets = {}
    for user_id in user_ids:
        profile_id = profiles.get(user_id)
        target = own.get(profile_id) if profile_id is not None else None
        if target is None:
            setting = setting or current_target(session)
            target = setting
        targets[user_id] = target
    return targets


_PROFILE_ID = re.compile(r"[1-9][0-9]{0,17}")  # below 2**63


def run_target(session: Session, choice: str) -> Target:
    """The target a run's `delivery` names, or InputError (field `delivery`) saying what it takes."""
    if choice == "setting":
        return current_target(session)
    if choice.startswith("folder:"):
        try:
            return folder_target(folder_settings({"path": choice.removeprefix("folder:")})["path"])
        except InputError as exc:
            raise InputError(f"{RUN_FIELD}: folder: {exc.message.removeprefix('path: ')}", field=RUN_FIELD) from None
    if choice.startswith("profile:"):
        raw = choice.removeprefix("profile:")
        # ASCII digits of a 64-bit row id only: "²".isdigit() holds and a longer number overflows the database.
        profile = session.get(DirectoryProfile, int(raw)) if _PROFILE_ID.fullmatch(raw) else None
        if profile is None:
            raise InputError(f"{RUN_FIELD}: there is no directory profile {raw!r}", field=RUN_FIELD)
        target = profile_target(profile)
        if target is None:
            raise InputError(f"{RUN_FIELD}: profile {profile.name!r} has no delivery target of its own (its users "
                             "go to the S/MIME delivery setting's: choose setting)", field=RUN_FIELD)  # fmt: skip
        return target
    raise InputError(f"{RUN_FIELD}: one of {RUN_CHOICES}, not {choice!r}", field=RUN_FIELD)


def chunk_targets(session: Session, user_ids: Collection[int], choice: str | None) -> dict[int, Target]:
    """Where each user's PKCS#12 goes in a run: the run's choice (resolved once), else each user's target."""
    if choice is not None:
        target = run_target(session, choice)
        return dict.fromkeys(user_ids, target)
    return user_targets(session, user_ids)

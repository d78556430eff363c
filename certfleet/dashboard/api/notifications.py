"""/api/v1/notifications: channels (secrets write-only), rules, the last notifications and their delivery state.

Everything goes through `certfleet.notifications.service`. Admins configure; every role reads. A channel body
is flat: `{"name", "kind": "email"|"slack"|"teams"|"webhook", ...}`; e-mail takes host, port, security
(starttls|tls|none), username, password, sender, recipients, ca_file; Slack and Teams take url (kept secret);
the JSON webhook takes url and signing_key (the HMAC-SHA256 key). Secrets left out on edit keep the stored ones.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query

from certfleet.dashboard.api.ids import RowId
from certfleet.dashboard.deps import Admin, DbSession, Viewer
from certfleet.notifications import service as svc
from certfleet.notifications.channels import KIND_LABELS
from certfleet.notifications.outbox import EVENT_KINDS

router = APIRouter(tags=["Notifications"])

_CHANNEL = Body(
    description="the channel's fields; secrets (password, Slack/Teams url, signing_key) left out on edit are kept",
    examples=[{"name": "ops chat", "kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/xyz"}],
)
_RULE = Body(
    description="event_kind, channel_ids, and optionally ca_connector_id, tag and server_group (a bot's Group: "
    "events about the servers mapped to its bots, or about such a bot) to match only those events",
    examples=[{"event_kind": "renewal-failed", "channel_ids": [1], "tag": "env=prod"}],
)


@router.get("/notifications", summary="The last notifications, newest first, with their delivery state")
def last_notifications(db: DbSession, who: Viewer, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return svc.last_notifications(db, limit)


@router.get("/notifications/kinds", summary="Event kinds (for rules) and channel kinds")
def kinds(who: Viewer) -> dict[str, Any]:
    return {"event_kinds": list(EVENT_KINDS), "channel_kinds": KIND_LABELS}


@router.get("/notifications/channels", summary="Channels (secrets are never returned)")
def channels(db: DbSession, who: Viewer) -> list[dict[str, Any]]:
    return svc.list_channels(db)


@router.get("/notifications/channels/{channel_id}", summary="One channel (secrets are never returned)")
def channel(channel_id: RowId, db: DbSession, who: Viewer) -> dict[str, Any]:
    return svc.channel_detail(svc.get_channel(db, channel_id))


@router.post("/notifications/channels", status_code=201, summary="Create a channel")
def create_channel(db: DbSession, who: Admin, body: dict[str, Any] = _CHANNEL) -> dict[str, Any]:
    return svc.channel_detail(svc.create_channel(db, body, who.username))


@router.put("/notifications/channels/{channel_id}", summary="Edit a channel (secrets left out keep the stored ones)")
def update_channel(channel_id: RowId, db: DbSession, who: Admin, body: dict[str, Any] = _CHANNEL) -> dict[str, Any]:
    return svc.channel_detail(svc.update_channel(db, channel_id, body, who.username))


@router.delete("/notifications/channels/{channel_id}", status_code=204, summary="Delete a channel")
def delete_channel(channel_id: RowId, db: DbSession, who: Admin) -> None:
    svc.delete_channel(db, channel_id, who.username)


@router.post(
    "/notifications/channels/{channel_id}/test",
    summary="Send a real test message now; answers whether it went out and what the server said",
)
def test_channel(channel_id: RowId, db: DbSession, who: Admin) -> dict[str, Any]:
    ok, answer = svc.send_test(db, channel_id, who.username)
    return {"sent": ok, "answer": answer}


@router.get("/notifications/rules", summary="Rules: which events go to which channels")
def rules(db: DbSession, who: Viewer) -> list[dict[str, Any]]:
    return svc.list_rules(db)


@router.post("/notifications/rules", status_code=201, summary="Create a rule")
def create_rule(db: DbSession, who: Admin, body: dict[str, Any] = _RULE) -> dict[str, Any]:
    return svc.rule_detail(svc.create_rule(db, body, who.username))


@router.put("/notifications/rules/{rule_id}", summary="Edit a rule")
def update_rule(rule_id: RowId, db: DbSession, who: Admin, body: dict[str, Any] = _RULE) -> dict[str, Any]:
    return svc.rule_detail(svc.update_rule(db, rule_id, body, who.username))


@router.delete("/notifications/rules/{rule_id}", status_code=204, summary="Delete a rule")
def delete_rule(rule_id: RowId, db: DbSession, who: Admin) -> None:
    svc.delete_rule(db, rule_id, who.username)

"""The check-notifications flow (what Prefect's schedule runs every 5 minutes) queues and sends like the timer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certfleet.flows.notifications import check_notifications
from certfleet.models.orm import utcnow
from certfleet.renewal.runs import record_completed
from tests.notifications.helpers import add_channel, add_rule
from tests.notifications.receivers import WebhookServer


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_sends_the_dead_mans_alert_once(database: str, webhook_server: WebhookServer) -> None:
    hook = add_channel({"name": "hook", "kind": "webhook", "url": webhook_server.url("/hook"), "signing_key": "k"})
    add_rule("renewal-schedule-stale", [hook])
    record_completed(at=utcnow() - timedelta(hours=5))
    first = check_notifications()
    assert (first["events"], first["queued"], first["sent"], first["failed"]) == (1, 1, 1, 0)
    second = check_notifications()
    assert (second["queued"], second["sent"]) == (0, 0)
    assert [hit.json()["event"] for hit in webhook_server.hits] == ["renewal-schedule-stale"]

"""Pausing and resuming a bot's Prefect work queue: a Stopped bot's runs wait in its paused queue.

Plain REST calls (no Prefect import): the bot agent uses this, and it must stay small.
"""

from __future__ import annotations

import base64

import httpx

from certfleet.deployments.names import BOT_POOL


class QueueError(RuntimeError):
    """The Prefect API refused or did not answer."""


def prefect_headers(auth_string: str | None) -> dict[str, str]:
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def set_paused(
    api_url: str, auth_string: str | None, queue: str, paused: bool, *, pool: str = BOT_POOL, timeout: float = 10.0
) -> bool:
    """Makes the queue exist and be (un)paused; returns True if it changed."""
    headers = prefect_headers(auth_string)
    base = api_url.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=timeout, trust_env=False) as client:
            found = client.get(f"/work_pools/{pool}/queues/{queue}")
            if found.status_code == 404:
                created = client.post(f"/work_pools/{pool}/queues", json={"name": queue, "is_paused": paused})
                _ok(created, f"create queue {queue}")
                return True
            _ok(found, f"read queue {queue}")
            if bool(found.json().get("is_paused")) == paused:
                return False
            _ok(client.patch(f"/work_pools/{pool}/queues/{queue}", json={"is_paused": paused}), f"update {queue}")
            return True
    except httpx.HTTPError as exc:
        raise QueueError(f"the Prefect API at {base} does not answer: {exc}") from exc


def _ok(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise QueueError(f"Prefect refused to {what}: {response.status_code} {response.text[:200]}")

"""prefect.yaml (workers) and `certfleet up` (serve) declare the same flows on the same schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from certfleet.deployments.serve import FLOWS, SCHEDULES

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def declared() -> list[dict[str, Any]]:
    return list(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])


def test_every_served_flow_is_declared_for_workers_and_no_other() -> None:
    served = {f"{f.fn.__module__}.{f.fn.__name__}" for f in FLOWS}
    assert {d["entrypoint"] for d in declared()} == served


def test_schedules_are_the_same_in_both_places() -> None:
    names = {f"{f.fn.__module__}.{f.fn.__name__}": f.name for f in FLOWS}
    in_yaml = {names[d["entrypoint"]]: d["schedules"][0]["cron"] for d in declared() if d.get("schedules")}
    assert in_yaml == SCHEDULES
